/**
 * Coalesced `ReachDenied` events: one agent asking for 5,000 names that do not exist must not append 5,000 events
 * (each one a write every other tenant's append waits behind). Per agent and reason, the first refusal of a window is
 * appended at once; the others of that window are counted, and at its end one event records how many there were,
 * when, and a sample of the names. Whatever the input, every refusal is accounted for and no event is refused by
 * Postgres: names are sanitised and capped before an event is built; while the log is unavailable the events are
 * spooled (the `record` option, FactRecorder.ts), never only logged.
 */
import { Duration, Effect } from "effect"
import type { Scope } from "effect"
import { type AppendOptions, EventLog } from "../../core/EventLog.ts"
import { type Event, EventMeta, ReachDenied, type ReachDeniedReason, REACH_DENIED_SAMPLE } from "../../core/Events.ts"
import { AgentId, Streams } from "../../core/Ids.ts"
import type { Session } from "../../core/RelayPolicy.ts"
import { CAPS, sanitize } from "../../core/Text.ts"
import * as Windows from "../../core/Windows.ts"

type Reason = typeof ReachDeniedReason.Type

/** The hub-level stream of the `cross_workspace` refusals, which only the operator reads. */
export const CROSS_WORKSPACE_STREAM = "reach-cross-workspace"

/** Options of `make`. */
export interface ReachDenialsOptions {
  /** Length of a coalescing window (default 10 s). */
  readonly window?: Duration.DurationInput
  /** The clock in ms (default `Date.now`). */
  readonly now?: () => number
  /** How an event is recorded (default: appended to the log; the hub spools it when the log is unavailable). */
  readonly record?: (stream: string, event: Event, options: AppendOptions) => Effect.Effect<void, unknown>
}

/** The coalescer. */
export interface ReachDenials {
  /** Records a refusal; resolves once a window's first refusal is appended (later ones return at once). */
  readonly deny: (session: Session, name: string, reason: Reason, ip: string | undefined) => Effect.Effect<void>
  /** Records a refusal without waiting (for the relay's synchronous path). */
  readonly note: (session: Session, name: string, reason: Reason, ip: string | undefined) => void
  /** Windows open now (one per agent and reason with refusals in the last window). */
  readonly open: () => number
}

interface Window {
  readonly session: Session
  readonly reason: Reason
  readonly startedAt: number
  ip: string | undefined
  /** Refusals after the first. */
  count: number
  firstAt: number
  lastAt: number
  readonly sample: Array<string>
}

const meta = (session: Session, ip: string | undefined) =>
  new EventMeta({ actor: { kind: "agent", id: session.agentId }, ...(ip ? { sourceIp: ip } : {}) })

/** Makes the coalescer; its scope flushes every open window when it closes. */
export const make = (
  options: ReachDenialsOptions = {}
): Effect.Effect<ReachDenials, never, EventLog | Scope.Scope> =>
  Effect.gen(function*() {
    const log = yield* EventLog
    const record = options.record ?? ((stream, event, opts) => log.append(stream, [event], opts))
    const windowMs = Duration.toMillis(options.window ?? "10 seconds")
    const now = options.now ?? Date.now

    // Another workspace has the name: hub-level, so that only the operator reads it (workspace keys read their
    // workspace's events; the reacher's workspace gets a not_found of its own, PgRelayPolicy.reach). On a stream of
    // its own: on the agent's stream it would leave a hole in the versions the workspace reads, right after its
    // not_found, which would tell the same thing.
    const append = (session: Session, event: ReachDenied, ip: string | undefined) =>
      record(event.reason === "cross_workspace" ? CROSS_WORKSPACE_STREAM : Streams.agent(AgentId.make(session.agentId)), event, {
        expectedVersion: "any",
        workspaceId: event.reason === "cross_workspace" ? null : session.workspaceId,
        meta: meta(session, ip)
      }).pipe(
        Effect.asVoid,
        Effect.catchAll((e) => Effect.logError("relay policy: ReachDenied was not recorded", e))
      )

    const windows = yield* Windows.make<Window>({
      windowMs,
      now,
      write: (w) =>
        w.count === 0 ? Effect.void : append(
          w.session,
          new ReachDenied({
            requestedName: w.sample[0] ?? "",
            fromAgentId: AgentId.make(w.session.agentId),
            reason: w.reason,
            count: w.count,
            firstAt: new Date(w.firstAt),
            lastAt: new Date(w.lastAt),
            sample: w.sample
          }),
          w.ip
        )
    })

    /** Counts a refusal into its window; returns the window's first event when this refusal opens one. */
    const count = (session: Session, rawName: string, reason: Reason, ip: string | undefined) => {
      const name = sanitize(rawName, CAPS.name)
      const { window: w, fresh } = windows.at(
        `${session.agentId}\0${reason}`,
        (t) => ({ session, reason, startedAt: t, ip, count: 0, firstAt: t, lastAt: t, sample: [] })
      )
      if (fresh) return new ReachDenied({ requestedName: name, fromAgentId: AgentId.make(session.agentId), reason })
      const t = now()
      w.count++
      w.lastAt = t
      w.ip = ip ?? w.ip
      if (w.count === 1) w.firstAt = t
      if (w.sample.length < REACH_DENIED_SAMPLE && !w.sample.includes(name)) w.sample.push(name)
      return undefined
    }

    return {
      deny: (session, name, reason, ip) =>
        Effect.suspend(() => {
          const first = count(session, name, reason, ip)
          return first ? append(session, first, ip) : Effect.void
        }),
      note: (session, name, reason, ip) => {
        const first = count(session, name, reason, ip)
        if (first) windows.fork(append(session, first, ip))
      },
      open: windows.size
    }
  })
