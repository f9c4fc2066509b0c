/**
 * What the append writer makes of a failed transaction: whose fault it was (a request's, the server's, the
 * connection's), whether its outcome is known, and, for a COMMIT whose reply was lost, which requests did commit —
 * found by their event ids, which are drawn once per append so that a retry can look them up.
 */
import { Data, Effect } from "effect"
import Pg from "pg"
import { type AppendResult, EventLogError } from "../../core/EventLog.ts"

/**
 * The connection failed while the COMMIT was on its way or its reply was: the transaction may or may not have
 * committed, and only a look-up of its event ids can tell.
 */
export class CommitUnknown extends Data.TaggedError("CommitUnknown")<{ readonly cause: unknown }> {}

/**
 * How a transaction failed:
 * - `refused`: Postgres refused a request's data (SQLSTATE classes 22 and 23) or a projection failed on it — retrying
 *   it cannot help, but the rest of its batch can commit without it;
 * - `failed`: the server answered with another error (lock or statement timeout, deadlock, serialization, ...) and
 *   rolled back: nothing committed, and a later attempt may well succeed;
 * - `down`: the connection failed (or never opened) before the COMMIT was sent: nothing committed;
 * - `unknown`: the connection failed once the COMMIT was sent (`CommitUnknown`).
 */
export type Failure = "refused" | "failed" | "down" | "unknown"

/** SQLSTATE classes of data that Postgres will never accept: 22 data exception, 23 integrity constraint violation. */
const REFUSAL_CLASSES = new Set(["22", "23"])

/**
 * An error reported by a live server on a connection that is still in step: an ERROR, not a FATAL one, and not one of
 * the "the server is going away" codes (class 08, 57P01–57P05), after which the connection is gone too.
 */
export const isServerError = (error: unknown): error is Pg.DatabaseError =>
  error instanceof Pg.DatabaseError && typeof error.code === "string" && error.severity === "ERROR" &&
  !error.code.startsWith("08") && !error.code.startsWith("57P")

/** A statement error that is the request's fault: its data was refused. Everything else is an outage. */
export const isRefusal = (error: unknown): boolean =>
  isServerError(error) && REFUSAL_CLASSES.has(error.code!.slice(0, 2))

/** Classifies the failure of one attempt at a batch (see `Failure`). */
export const classify = (error: unknown): Failure => {
  if (error instanceof CommitUnknown) return "unknown"
  if (error instanceof EventLogError) return error.reason === "Unavailable" ? "down" : "refused"
  if (isRefusal(error)) return "refused"
  return isServerError(error) ? "failed" : "down"
}

/**
 * Marks the failure of the round trip that carries the COMMIT: unless the server answered with an error (then the
 * transaction surely rolled back), its outcome is unknown.
 */
export const duringCommit = <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E | CommitUnknown> =>
  Effect.mapError(effect, (error) => (isServerError(error) ? error : new CommitUnknown({ cause: error })))

/**
 * How long the writer waits before each further attempt at a batch whose outcome is unknown; after the last, its
 * callers are told the log is unavailable. Short: the writer holds every other append meanwhile, and an outage long
 * enough to outlast these belongs to the callers' own retries (with the same ids) and the spool.
 */
export const RECOVERY_DELAYS = ["100 millis", "1 second"] as const

/** What recovery needs of a request: its event ids and whether they may already be stored. */
export interface Identified {
  readonly ids: ReadonlyArray<string>
  /** The caller chose the ids (it retries on its own), so an earlier attempt of it may have committed. */
  readonly callerIds: boolean
  /** A COMMIT of this request was sent and its reply lost. */
  unknown: boolean
}

/** Ids to look up under the append lock, or none: only requests that may already be stored are looked up. */
export const idsToLookUp = (batch: ReadonlyArray<Identified>): Array<string> => {
  const ids: Array<string> = []
  for (const p of batch) if (p.callerIds || p.unknown) ids.push(...p.ids)
  return ids
}

/** The look-up of stored ids; run after the append lock is taken, so every earlier append has ended one way or the other. */
export const LOOKUP_SQL = `select id::text as id, position, version from events where id = any($1::uuid[])`

/** For each request of the batch, its stored result if its events are already in the log. */
export const storedResults = (
  batch: ReadonlyArray<Identified>,
  rows: ReadonlyArray<Record<string, unknown>>
): Array<AppendResult | undefined> => {
  if (rows.length === 0) return []
  const byId = new Map(rows.map((r) => [r.id as string, { position: Number(r.position), version: Number(r.version) }]))
  // A request commits whole or not at all, so its first and last ids settle it.
  return batch.map((p) => {
    const first = byId.get(p.ids[0]!)
    const last = byId.get(p.ids[p.ids.length - 1]!)
    return first && last ? { firstPosition: first.position, lastPosition: last.position, version: last.version } : undefined
  })
}

/** The error for a request whose outcome stayed unknown after every attempt. */
export const outcomeUnknown = (cause: unknown) =>
  new EventLogError({
    reason: "Unavailable",
    message: `event log unavailable: the outcome of this append is unknown (the connection failed after its commit was sent: ${
      messageOf(cause)
    }); appending it again with the same ids is safe`,
    cause
  })

/** The innermost message of an error. */
export const messageOf = (cause: unknown): string => {
  if (cause instanceof CommitUnknown) return messageOf(cause.cause)
  const inner = (cause as { cause?: unknown })?.cause
  if (inner instanceof Error) return inner.message
  if (cause instanceof Error) return cause.message
  return String(cause)
}

/** The log is unavailable: Postgres or the connection failed, not the request. */
export const unavailable = (cause: unknown) =>
  new EventLogError({ reason: "Unavailable", message: `event log unavailable: ${messageOf(cause)}`, cause })
