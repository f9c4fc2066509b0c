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
  /**
   * Records several facts of one stream, workspace and metadata in one append (one event each), with `record`'s
   * guarantees for each: spooled event by event when the log cannot take them, and, when the log refuses the append
   * for good, recorded again one by one so that only a bad event is lost (logged as an error, not failed).
   */
  readonly recordAll: (stream: string, events: ReadonlyArray<Event>, options: AppendOptions) => Effect.Effect<void>
}

/** The default retry before spooling: 3 tries, 200 ms apart. */
export const defaultRetry: Schedule.Schedule<unknown> = Schedule.addDelay(Schedule.recurs(2), () => "200 millis")

const isUnavailable = (e: unknown): boolean => e instanceof EventLogError && e.reason === "Unavailable"

/** Makes the recorder over the `EventLog` of the context. */
export const make = (spool: Spool, retry: Schedule.Schedule<unknown> = defaultRetry): Effect.Effect<FactRecorder, never, EventLog> =>
  Effect.map(EventLog, (log) => {
    // One append of `events`, each with its id drawn once, before any attempt: the retries and a later replay of the
    // spooled entries carry the same ids, so an append whose reply was lost is never stored twice. Fails only with a
    // refusal for good.
    const appendOnce = (stream: string, events: ReadonlyArray<Event>, options: AppendOptions) =>
      Effect.suspend(() => {
        const ids = events.map(() => uuidv7())
        const what = events.length === 1 ? events[0]!._tag : `${events.length} ${events[0]!._tag}`
        const spoolAll = Effect.forEach(events, (event, i) => spool.write(stream, event, { ...options, id: ids[i]! }), {
          discard: true
        })
        const toSpool = (why: string) => Effect.zipRight(Effect.logWarning(`event log: ${why}; spooling ${what} on ${stream}`), spoolAll)
        // Older facts wait in the spool: these queue behind them, so the log receives them in order.
        if (spool.pending() > 0) return spoolAll
        return log.append(stream, events, { ...options, ids }).pipe(
          Effect.asVoid,
          // Already there: an earlier attempt committed and only its ack was lost.
          Effect.catchIf((e): e is VersionConflict => e instanceof VersionConflict, () => Effect.void),
          Effect.retry({ while: isUnavailable, schedule: retry }),
          Effect.catchAll((e) => e.reason === "Unavailable" ? toSpool("unreachable") : Effect.fail(e)),
          Effect.onInterrupt(() => toSpool("append interrupted"))
        )
      })
    const record: FactRecorder["record"] = (stream, event, options) =>
      appendOnce(stream, [event], options).pipe(
        Effect.tapError((e) => Effect.logError(`event log: ${event._tag} on ${stream} was refused`, e))
      )
    const recordAll: FactRecorder["recordAll"] = (stream, events, options) =>
      events.length === 0 ? Effect.void : appendOnce(stream, events, options).pipe(
        Effect.catchAll((e) =>
          events.length === 1
            ? Effect.logError(`event log: ${events[0]!._tag} on ${stream} was refused`, e)
            : Effect.zipRight(
              Effect.logError(`event log: ${events.length} ${events[0]!._tag} on ${stream} were refused together; recording them one by one`, e),
              // Nothing of the append was stored: each event on its own, so that only a bad one is lost (and logged).
              Effect.forEach(events, (event) => Effect.ignore(record(stream, event, options)), { discard: true })
            )
        )
      )
    return { record, recordAll }
  })
