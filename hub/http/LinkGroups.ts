/**
 * The records of requests let through a public link, appended in groups: while one group's appends are on their way,
 * the records of requests that end meanwhile gather by key (link, address, user agent: what an append shares, its
 * stream, workspace and metadata), and go as one append each, one event per request, once the last group is done. A
 * lone request is appended at once; under load a group holds what ended during one append's round trip. Per request
 * this saves the fiber, the retry chain and the writer request of an append of its own (18% of the hub's CPU at 32
 * clients went to recording, one append per request). A group is recorded by the FactRecorder's `recordAll`: each
 * event's id drawn once, before any attempt, so a retry after a lost reply stores nothing twice; a group the log cannot
 * take is retried, then spooled event by event (the spool replays them in order); a group it refuses for good is
 * recorded again one event at a time, so that one bad record cannot take the others with it.
 */
import { Effect } from "effect"
import type { EventMeta, LinkAccessed } from "../../core/Events.ts"
import { uuidv7 } from "../../core/Ids.ts"
import type { FactRecorder } from "../eventlog/FactRecorder.ts"

/** What the events of one group share. */
export interface Target {
  readonly stream: string
  readonly workspaceId: string | null
  readonly meta: EventMeta
}

/** Gathers records into groups. */
export interface LinkGroups {
  /** Adds a request's record to the group of `key` (whose target it shares); appended in the background. */
  readonly add: (key: string, target: Target, event: LinkAccessed) => void
  /** Records gathered and not yet handed to the log. */
  readonly pending: () => number
  /**
   * Whether the log is not keeping up: an append has been on its way for more than STALL_MS, or MAX_GATHERED records
   * wait. The link proxy then refuses new requests (503), as it does while facts wait in the spool: a request is only
   * let through when its record can be kept.
   */
  readonly stalled: () => boolean
}

/** How long a round's appends may take before the log counts as stalled (see `stalled`). */
export const STALL_MS = 2_000

/** Most records gathered in memory; past it each goes to the FactRecorder alone (the writer's bounded queue, the spool). */
export const MAX_GATHERED = 10_000

/** Most events in one append (a larger group is split): bounds one append's statement and its writer request. */
export const MAX_GROUP = 500

interface Group extends Target {
  readonly events: Array<LinkAccessed>
}

/**
 * Makes the groups over `facts`; `fork` runs an effect in the background so that a scope's close waits for it, also for
 * a round forked while it closes (Windows.fork, whose close awaits its fibers): what is gathered then is still recorded.
 * `now` is the wall clock a stall is measured on (tests pass their own).
 */
export const make = (
  facts: FactRecorder,
  fork: (effect: Effect.Effect<void>) => void,
  now: () => number = Date.now
): Effect.Effect<LinkGroups> =>
  Effect.sync(() => {
    let gathered = new Map<string, Group>()
    let count = 0
    let running = false
    let roundStartedAt = 0

    // The FactRecorder's recordAll: ids drawn once, retried, spooled, and one by one if the log refuses the group.
    const appendGroup = (group: Group): Effect.Effect<void> =>
      facts.recordAll(group.stream, group.events, { expectedVersion: "any", workspaceId: group.workspaceId, meta: group.meta })

    // One round at a time: what ended during a round is the next round, at once.
    const round: Effect.Effect<void> = Effect.suspend(() => {
      roundStartedAt = now()
      const groups = [...gathered.values()]
      gathered = new Map()
      count = 0
      return Effect.forEach(groups, appendGroup, { concurrency: "unbounded", discard: true })
    }).pipe(Effect.ensuring(Effect.sync(() => {
      running = false
      if (count > 0) start()
    })))
    const start = () => {
      running = true
      fork(round)
    }

    return {
      add: (key, target, event) => {
        if (count >= MAX_GATHERED) {
          fork(facts.recordAll(target.stream, [event], { expectedVersion: "any", workspaceId: target.workspaceId, meta: target.meta }))
          return
        }
        let group = gathered.get(key)
        if (group === undefined || group.events.length >= MAX_GROUP) {
          // A full group goes under a key of its own; the next record starts a new one.
          if (group !== undefined) gathered.set(`${key}\0${uuidv7()}`, group)
          group = { ...target, events: [] }
          gathered.set(key, group)
        }
        group.events.push(event)
        count++
        if (!running) start()
      },
      pending: () => count,
      stalled: () => count >= MAX_GATHERED || (running && now() - roundStartedAt > STALL_MS)
    }
  })
