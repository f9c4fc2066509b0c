/**
 * How the hub runs a command: read the aggregate's stream, fold it, decide, and append the decided events with the
 * stream's version as the expected one; on a version conflict (someone appended meanwhile) do it all again; when the
 * log is unavailable, append the same events with the same ids again, so that one that did commit is not stored twice.
 */
import { Effect, Either, Schedule } from "effect"
import { type DomainError } from "../../core/DomainError.ts"
import { type Decider, fold } from "../../core/Decider.ts"
import { type AppendOptions, EventLog, type EventLogError, VersionConflict } from "../../core/EventLog.ts"
import type { Event, EventMeta } from "../../core/Events.ts"
import { uuidv7 } from "../../core/Ids.ts"

/** What a handled command did. */
export interface Handled<S> {
  /** The events appended (none when the command was an idempotent no-op). */
  readonly events: ReadonlyArray<Event>
  /** The aggregate's state after them. */
  readonly state: S
}

/** Options of one command. */
export interface HandleOptions<S> {
  readonly workspaceId: string | null
  readonly meta: EventMeta
  /** State to fold from instead of the decider's initial one (e.g. known from a read model). */
  readonly initial?: S
}

/**
 * Appends one decision. Its ids are drawn once, so that after an `Unavailable` answer (the outcome may be unknown:
 * the connection failed after the commit was sent) the same append can be tried again and the log answer with what
 * it stored. Two more tries, 0.2 and 0.4 s apart: the log's writer has already retried on its side.
 */
const appendDecided = (log: EventLog["Type"], stream: string, events: ReadonlyArray<Event>, options: AppendOptions) => {
  const withIds: AppendOptions = { ...options, ids: events.map(() => uuidv7()) }
  return log.append(stream, events, withIds).pipe(
    Effect.retry({
      while: (e) => e._tag === "EventLogError" && e.reason === "Unavailable",
      times: 2,
      schedule: Schedule.exponential("200 millis")
    })
  )
}

/**
 * Runs `command` against `stream`. Retries up to 8 times on `VersionConflict`, with a little jitter so that two
 * writers racing on one stream do not collide again in lockstep, each time deciding anew (new events, new ids); a
 * domain refusal is returned as is.
 */
export const handle = <C, S>(
  decider: Decider<C, S, DomainError>,
  stream: string,
  command: C,
  options: HandleOptions<S>
): Effect.Effect<Handled<S>, DomainError | EventLogError | VersionConflict, EventLog> =>
  Effect.gen(function*() {
    const log = yield* EventLog
    const stored = yield* log.readStream(stream)
    const version = stored.length === 0 ? 0 : stored[stored.length - 1]!.version
    const state = fold(decider, stored.map((e) => e.event), options.initial ?? decider.initialState)
    const decided = decider.decide(command, state)
    if (Either.isLeft(decided)) return yield* decided.left
    const events = decided.right
    if (events.length === 0) return { events, state }
    yield* appendDecided(log, stream, events, {
      expectedVersion: version === 0 ? "no_stream" : version,
      workspaceId: options.workspaceId,
      meta: options.meta
    })
    return { events, state: fold(decider, events, state) }
  }).pipe(
    Effect.retry({
      while: (e) => e instanceof VersionConflict,
      times: 8,
      schedule: Schedule.jittered(Schedule.exponential("5 millis"))
    }),
    Effect.withSpan("Command.handle", { attributes: { stream } })
  )
