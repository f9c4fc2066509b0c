/**
 * The records of requests let through a public link, appended in groups: while one group's appends are on their way,
 * the records of requests that end meanwhile gather by key (link, address, user agent: what an append shares, its
 * stream, workspace and metadata), and go as one append each, one event per request, once the last group is done. A
 * lone request is appended at once; under load a group holds what ended during one append's round trip. Per request
 * this saves the fiber, the retry chain and the writer request of an append of its own (18% of the hub's CPU at 32
 * clients went to recording, one append per request). Each event's id is drawn once, before any attempt, so a retry
 * after a lost reply stores nothing twice; a group the log cannot take is retried, then spooled event by event (the
 * spool replays them in order), and a group it refuses for good is appended again one event at a time through the
 * FactRecorder, so that one bad record cannot take the others with it.
 */
import { Effect, type Schedule } from "effect"
import type { Scope } from "effect"
import { type AppendOptions, EventLog, EventLogError, VersionConflict } from "../../core/EventLog.ts"
import type { EventMeta, LinkAccessed } from "../../core/Events.ts"
import { uuidv7 } from "../../core/Ids.ts"
import * as FactRecorder from "../eventlog/FactRecorder.ts"
import type { Spool } from "../eventlog/Spool.ts"

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
}

/** Most events in one append (a larger group is split): bounds one append's statement and its writer request. */
export const MAX_GROUP = 500

interface Group extends Target {
  readonly events: Array<LinkAccessed>
}

const isUnavailable = (e: unknown): boolean => e instanceof EventLogError && e.reason === "Unavailable"

/**
 * Makes the groups over the log; `fork` runs an effect in the background so that the scope's close waits for it (the
 * recorder's windows' fork), and the scope's close appends whatever is still gathered.
 */
export const make = (
  spool: Spool,
  facts: FactRecorder.FactRecorder,
  fork: (effect: Effect.Effect<void>) => void,
  retry: Schedule.Schedule<unknown> = FactRecorder.defaultRetry
): Effect.Effect<LinkGroups, never, Scope.Scope | EventLog> =>
  Effect.gen(function*() {
    const log = yield* EventLog
    let gathered = new Map<string, Group>()
    let count = 0
    let running = false

    const appendGroup = (group: Group): Effect.Effect<void> =>
      Effect.suspend(() => {
        const ids = group.events.map(() => uuidv7())
        const options: AppendOptions = { expectedVersion: "any", workspaceId: group.workspaceId, meta: group.meta }
        const toSpool = (why: string) =>
          Effect.zipRight(
            Effect.logWarning(`event log: ${why}; spooling ${group.events.length} LinkAccessed on ${group.stream}`),
            Effect.forEach(group.events, (event, i) => spool.write(group.stream, event, { ...options, id: ids[i]! }), {
              discard: true
            })
          )
        // Older facts wait in the spool: these queue behind them, so the log receives them in order.
        if (spool.pending() > 0) {
          return Effect.forEach(group.events, (event, i) => spool.write(group.stream, event, { ...options, id: ids[i]! }), {
            discard: true
          })
        }
        return log.append(group.stream, group.events, { ...options, ids }).pipe(
          Effect.asVoid,
          // Already there: an earlier attempt committed and only its ack was lost.
          Effect.catchIf((e): e is VersionConflict => e instanceof VersionConflict, () => Effect.void),
          Effect.retry({ while: isUnavailable, schedule: retry }),
          Effect.catchAll((e) =>
            e.reason === "Unavailable"
              ? toSpool("unreachable")
              : Effect.zipRight(
                Effect.logError(`links: a group of ${group.events.length} LinkAccessed was refused; appending them one by one`, e),
                // Nothing of the group was stored: each event on its own, so that only a bad one is lost (and logged).
                Effect.forEach(group.events, (event) =>
                  facts.record(group.stream, event, options).pipe(
                    Effect.catchAll((e) => Effect.logError("links: LinkAccessed was not recorded", e))
                  ), { discard: true })
              )
          ),
          Effect.onInterrupt(() => toSpool("append interrupted"))
        )
      })

    // One round at a time: what ended during a round is the next round, at once.
    const round: Effect.Effect<void> = Effect.suspend(() => {
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
      pending: () => count
    }
  })
