/**
 * How the hub records a fact that already happened (a tunnel closed, an agent disconnected, refusals counted): such an
 * event cannot be refused like an action, so it is appended, retried while the log is unavailable, and then spooled
 * (see Spool.ts) — also when the append is interrupted (the hub is shutting down) — and never only logged. While older
 * facts wait in the spool, newer ones queue behind them so the log receives them in order.
 */
import { Effect, Schedule } from "effect"
import { type AppendOptions, EventLog, EventLogError, VersionConflict } from "../../core/EventLog.ts"
import type { Event } from "../../core/Events.ts"
import { uuidv7 } from "../../core/Ids.ts"
import type { Spool } from "./Spool.ts"

/** Records facts. */
export interface FactRecorder {
  /**
   * Appends `event` to `stream`, or spools it when the log is unavailable or the append is interrupted; fails only when
   * the log refuses the event for good (a bug in what was built, logged as an error).
   */
  readonly record: (stream: string, event: Event, options: AppendOptions) => Effect.Effect<void, EventLogError>
}

/** The default retry before spooling: 3 tries, 200 ms apart. */
export const defaultRetry: Schedule.Schedule<unknown> = Schedule.addDelay(Schedule.recurs(2), () => "200 millis")

const isUnavailable = (e: unknown): boolean => e instanceof EventLogError && e.reason === "Unavailable"

/** Makes the recorder over the `EventLog` of the context. */
export const make = (spool: Spool, retry: Schedule.Schedule<unknown> = defaultRetry): Effect.Effect<FactRecorder, never, EventLog> =>
  Effect.map(EventLog, (log) => ({
    record: (stream, event, options) =>
      Effect.suspend(() => {
        // Drawn once, before any attempt: the retries and a later replay of the spooled entry carry the same id, so
        // an append whose reply was lost is never stored twice.
        const id = uuidv7()
        const toSpool = (why: string) =>
          Effect.zipRight(
            Effect.logWarning(`event log: ${why}; spooling ${event._tag} on ${stream}`),
            spool.write(stream, event, { ...options, id })
          )
        if (spool.pending() > 0) return spool.write(stream, event, { ...options, id })
        return log.append(stream, [event], { ...options, ids: [id] }).pipe(
          Effect.asVoid,
          // Already there: an earlier attempt committed and only its ack was lost.
          Effect.catchIf((e): e is VersionConflict => e instanceof VersionConflict, () => Effect.void),
          Effect.retry({ while: isUnavailable, schedule: retry }),
          Effect.catchAll((e) =>
            e.reason === "Unavailable"
              ? toSpool("unreachable")
              : Effect.zipRight(Effect.logError(`event log: ${event._tag} on ${stream} was refused`, e), Effect.fail(e))
          ),
          Effect.onInterrupt(() => toSpool("append interrupted"))
        )
      })
  }))
