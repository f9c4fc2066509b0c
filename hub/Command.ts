/**
 * How the hub runs a command: read the aggregate's stream, fold it, decide, and append the decided events with the
 * stream's version as the expected one; on a version conflict (someone appended meanwhile) do it all again.
 */
import { Effect, Either, Schedule } from "effect"
import { type DomainError } from "../core/DomainError.ts"
import { type Decider, fold } from "../core/Decider.ts"
import { EventLog, type EventLogError, VersionConflict } from "../core/EventLog.ts"
import type { Event, EventMeta } from "../core/Events.ts"

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
 * Runs `command` against `stream`. Retries up to 8 times on `VersionConflict`, with a little jitter so that two
 * writers racing on one stream do not collide again in lockstep; a domain refusal is returned as is.
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
    yield* log.append(stream, events, {
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
