/**
 * What a `connect audit verify` run leaves on the log: one `AuditRead` of kind `verify`, hub-level, the local admin its
 * actor (as an export run's), with the range checked, the events verified, and whether the chain held — `intact`, or
 * `broken` with the first broken position and the number of breaks — and the signed checkpoints it checked. The
 * console's Overview shows the latest (an operator key reads it: hub-level events are the operator's). On the log
 * rather than in a table of its own: the record of a verification is then chained and covered by the next signed
 * checkpoint like every other fact, and read through the audit API with no second way into the data.
 *
 * Recording never changes a verification's answer: a log that cannot take the event (a read-only role or replica, a
 * chain broken at its head) gets a warning on stderr, and verify's output and exit code stay what they were.
 */
import { Console, Effect } from "effect"
import { EventLog } from "../core/EventLog.ts"
import { AuditRead, EventMeta } from "../core/Events.ts"
import { uuidv7 } from "../core/Ids.ts"
import type { CheckpointOutcome } from "./Checkpoints.ts"
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

/** Appends the run's `AuditRead`; a failure is a warning on stderr, never the run's failure. */
export const record = (run: VerifyRun, result: VerifyResult, checkpoints: ReadonlyArray<CheckpointOutcome>) =>
  Effect.flatMap(EventLog, (log) =>
    log.append(`auditread-${uuidv7()}`, [eventOf(run, result, checkpoints)], {
      expectedVersion: "no_stream",
      workspaceId: null,
      meta: new EventMeta({ actor: { kind: "admin" } })
    })).pipe(
      Effect.asVoid,
      Effect.catchAll((e) =>
        Console.error(`connect: the result was not recorded on the log (${"message" in e ? e.message : String(e)})`)
      )
    )
