/**
 * What a `connect audit verify` run leaves on the log: one `AuditRead` of kind `verify`, hub-level, the local admin its
 * actor (as an export run's), with the range checked, the events verified, and whether the chain held — `intact`, or
 * `broken` with the first broken position and the number of breaks — and the signed checkpoints it checked. The
 * console's Overview shows the latest (an operator key reads it: hub-level events are the operator's). On the log
 * rather than in a table of its own: the record of a verification is then chained and covered by the next signed
 * checkpoint like every other fact, and read through the audit API with no second way into the data.
 *
 * Runs are coalesced per window (audit/PgReadWindows.ts): the first run of a window is recorded at once, as is any
 * run whose outcome differs from the window's (intact, or broken at another position or with other checkpoints
 * failing); repeats of the same outcome are counted and reach the log as one event with `runs`, so that a script that
 * verifies every minute adds at most two events an hour.
 *
 * Recording never changes a verification's answer: a log that cannot take the event (a read-only role or replica, a
 * chain broken at its head) gets a warning on stderr, and verify's output and exit code stay what they were.
 */
import { Console, Effect } from "effect"
import { AuditRead, EventMeta } from "../core/Events.ts"
import type { CheckpointOutcome } from "./Checkpoints.ts"
import * as PgReadWindows from "./PgReadWindows.ts"
import type { VerifyResult } from "./Verify.ts"

/** How the run was asked for: its options as typed (positions, `independent`), for the record. */
export interface VerifyRun {
  readonly from?: number | undefined
  readonly to?: number | undefined
  readonly independent: boolean
}

/** The `AuditRead` of one verify run. */
export const eventOf = (run: VerifyRun, result: VerifyResult, checkpoints: ReadonlyArray<CheckpointOutcome>): AuditRead => {
  const filters: Record<string, string> = { independent: String(run.independent) }
  if (run.from !== undefined) filters.from = String(run.from)
  if (run.to !== undefined) filters.to = String(run.to)
  if (checkpoints.length > 0) {
    filters.checkpoints = `${checkpoints.filter((c) => c.ok).length}/${checkpoints.length} held`
  }
  return new AuditRead({
    kind: "verify",
    filters,
    count: result.count,
    fromPosition: result.from,
    toPosition: result.to,
    ...(result.ok
      ? { verified: "intact" as const }
      : { verified: "broken" as const, firstBreak: result.position, breaks: result.breaks.length })
  })
}

/** The outcome a run shares with the others of its window: whether the chain held, where it broke, which notes held. */
export const signatureOf = (event: AuditRead): string =>
  [event.verified, event.firstBreak ?? "", event.breaks ?? "", event.filters.checkpoints ?? ""].join("/")

/**
 * Records the run's `AuditRead` (at once, or counted in its window); a failure is a warning on stderr, never the
 * run's failure. `windowMs` is the window's length (default {@link PgReadWindows.WINDOW_MS}).
 */
export const record = (
  run: VerifyRun,
  result: VerifyResult,
  checkpoints: ReadonlyArray<CheckpointOutcome>,
  windowMs?: number
) => {
  const event = eventOf(run, result, checkpoints)
  return PgReadWindows.record(
    { actor: "admin", event, workspaceId: null, meta: new EventMeta({ actor: { kind: "admin" } }), signature: signatureOf(event) },
    windowMs === undefined ? {} : { windowMs }
  ).pipe(
    Effect.asVoid,
    Effect.catchAll((e) =>
      Console.error(`connect: the result was not recorded on the log (${"message" in e ? e.message : String(e)})`)
    )
  )
}
