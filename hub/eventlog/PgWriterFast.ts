/**
 * The writer's common case without an Effect: a batch computed from the head the writer believes in, sent on its open
 * connection with its commit in one message, answered from a plain callback. Everything else (no belief, no
 * connection, a request that may be stored already, any failure) goes the way of `PgAppendTransaction`, which knows
 * every case; this path only skips the Effect machinery of the case that needs none of it. Measured before it (one
 * caller, load ~7): 0.16 ms p50 went from the writer taking a batch to building its statements, all of it combinators
 * (`writeBatch`, `attempt`, `transaction`), and 0.30 ms from the reply to the caller resumed; a one-caller append waits
 * for nothing else.
 */
import { Cause, Exit, FiberId, Option, Runtime } from "effect"
import { fromBelief, headOf, type Outcome, type Pending, settle } from "./PgAppendCursor.ts"
import { type AppendContext, beginTransaction, checkOf, write } from "./PgAppendStatements.ts"
import type { WriterConnection } from "./PgWriterConnection.ts"

/** How a fast attempt ended: committed (the head and each request's outcome), or failed on `conn` with `error`. */
export type FastResult =
  | { readonly _tag: "Committed"; readonly head: number; readonly outcomes: ReadonlyArray<Outcome> }
  | { readonly _tag: "Failed"; readonly conn: WriterConnection; readonly error: Error }

/**
 * Sends `batch` the fast way if it can, and then calls `done` once with the result; returns false, having sent
 * nothing, when it cannot: the writer believes in no head, has no open connection, a request's outcome may be stored
 * already (a lost COMMIT reply: it must be looked up under the lock), or the statements cannot be built (a value that
 * cannot be sent, a projection that fails: the slow path builds them again and answers for it).
 */
export const tryFast = (
  ctx: AppendContext,
  runtime: Runtime.Runtime<never>,
  batch: ReadonlyArray<Pending>,
  done: (result: FastResult) => void
): boolean => {
  const head = ctx.head.head()
  const conn = ctx.connector.current()
  if (head === undefined || conn === undefined || batch.some((p) => p.unknown)) return false
  let settled: ReturnType<typeof settle>
  let cursor: ReturnType<typeof fromBelief>
  try {
    beginTransaction(conn, ctx.pacing.notify)
    cursor = fromBelief(head, ctx.head, batch, conn.databaseNow())
    // The head before the batch: `settle` advances the cursor.
    const check = checkOf(cursor)
    settled = settle(batch, cursor)
    const built = Runtime.runSyncExit(runtime)(write(ctx, conn, check, settled.writes))
    if (Exit.isFailure(built)) {
      // A projection that went asynchronous left its fiber running: stopped, so that it cannot add its statements to
      // the slow path's message after these are discarded.
      const defect = Cause.dieOption(built.cause)
      if (Option.isSome(defect) && Runtime.isAsyncFiberException(defect.value)) {
        defect.value.fiber.unsafeInterruptAsFork(FiberId.none)
      }
      conn.pipeline.discard()
      return false
    }
  } catch {
    conn.pipeline.discard()
    return false
  }
  conn.pipeline.addRaw("commit")
  conn.pipeline.sendWith((error) => {
    if (error !== null) return done({ _tag: "Failed", conn, error })
    ctx.head.committed(headOf(cursor), cursor.versions)
    done({ _tag: "Committed", head: cursor.position, outcomes: settled.outcomes })
  })
  return true
}
