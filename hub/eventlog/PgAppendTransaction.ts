/**
 * One attempt at appending a batch, in one transaction on the writer's connection. Usually one round trip: from the
 * head the writer last committed (`PgWriterHead`), settle each request (a version conflict, or events to chain), and
 * send begin, `connect_append` (which takes the append lock, checks that head, inserts with one multi-row statement and
 * notifies), the inline projections' writes and the commit in one message (`PgAppendStatements`). When the head was not
 * what the writer believed (another process appended, a stream it did not know, a retried id), the same in two round
 * trips: take the lock and read the head and the looked-up ids first. And when that fails for one request's sake, the
 * same again with each request under its own savepoint.
 */
import { Cause, Effect, Either, Option } from "effect"
import type { EventLogError } from "../../core/EventLog.ts"
import * as AppendBatch from "../../core/AppendBatch.ts"
import { BatchIds, type Cursor, fromBelief, headOf, type Outcome, type Pending, settle } from "./PgAppendCursor.ts"
import {
  type AppendContext,
  beginTransaction,
  type Check,
  checkOf,
  failureOf,
  isStale,
  lockAndReadHead,
  write
} from "./PgAppendStatements.ts"
import type { WriterConnection } from "./PgWriterConnection.ts"
import type { Head } from "./PgWriterHead.ts"
import * as Recovery from "./PgWriterRecovery.ts"

export type { AppendContext } from "./PgAppendStatements.ts"
export { failureOf, unavailable } from "./PgAppendStatements.ts"
export type { Outcome, Pending } from "./PgAppendCursor.ts"

/**
 * Commits a batch in one transaction with one insert, from the cursor `begin` opens it with; a version conflict fails
 * only its own request. The insert, the projections' writes and the commit go in one round trip.
 */
const commitBatch = (
  ctx: AppendContext,
  batch: ReadonlyArray<Pending>,
  begin: (conn: WriterConnection) => Effect.Effect<Cursor, Error | EventLogError>
) =>
  ctx.connector.transaction((conn) =>
    Effect.gen(function* () {
      const cursor = yield* begin(conn)
      const check = checkOf(cursor)
      const { outcomes, writes } = settle(batch, cursor)
      yield* write(ctx, conn, check, writes)
      conn.pipeline.addRaw("commit")
      yield* Recovery.duringCommit(conn.pipeline.send)
      ctx.head.committed(headOf(cursor), cursor.versions)
      return { head: cursor.position, outcomes }
    })
  )

/** Opens the transaction from the writer's belief: nothing is sent until the commit. */
const fromHead = (ctx: AppendContext, head: Head, batch: ReadonlyArray<Pending>) => (conn: WriterConnection) =>
  Effect.sync(() => {
    beginTransaction(conn, ctx.pacing.notify)
    return fromBelief(head, ctx.head, batch, conn.databaseNow())
  })

/** Opens the transaction by taking the lock and reading the head: one round trip. */
const fromLock = (ctx: AppendContext, batch: ReadonlyArray<Pending>) => (conn: WriterConnection) =>
  Effect.tap(lockAndReadHead(conn, batch, ctx.pacing.notify), (cursor) => ctx.head.read(headOf(cursor), cursor.versions))

/**
 * Commits a batch that failed as a whole again, in one transaction, each request under its own savepoint: a request
 * that Postgres or a projection refuses is rolled back alone and the rest commit with one fsync.
 */
const commitIsolated = (ctx: AppendContext, batch: ReadonlyArray<Pending>) =>
  ctx.connector.transaction((conn) =>
    Effect.gen(function* () {
      const cursor = yield* fromLock(ctx, batch)(conn)
      const outcomes: Array<Outcome> = []
      const ids = new BatchIds()
      for (let i = 0; i < batch.length; i++) {
        const p = batch[i]!
        const already = cursor.stored[i]
        if (already) {
          outcomes.push(Either.right(already))
          continue
        }
        const repeated = ids.settled(p)
        if (repeated) {
          outcomes.push(repeated)
          continue
        }
        const prepared = AppendBatch.prepare(cursor, p)
        if (Either.isLeft(prepared)) {
          outcomes.push(Either.left(prepared.left))
          continue
        }
        const stored = prepared.right
        const check: Check = {
          position: stored[0]!.position - 1,
          hash: stored[0]!.prevHash,
          guesses: new Map(),
          unchecked: [],
          maxSkew: null
        }
        // The savepoint goes alone, so that it surely exists when the request's statements fail wherever they fail.
        conn.pipeline.addRaw("savepoint append_request")
        yield* conn.pipeline.send
        const written = yield* Effect.either(
          Effect.zipRight(
            write(ctx, conn, check, [{ p, stored }]),
            Effect.suspend(() => {
              conn.pipeline.addRaw("release savepoint append_request")
              return conn.pipeline.send
            })
          )
        )
        if (Either.isRight(written)) {
          ids.add(stored)
          outcomes.push(Either.right(AppendBatch.resultOf(stored)))
        } else {
          yield* conn.pipeline.recover("rollback to savepoint append_request")
          AppendBatch.rewind(cursor, stored)
          outcomes.push(Either.left(failureOf(written.left)))
        }
      }
      conn.pipeline.addRaw("commit")
      yield* Recovery.duringCommit(conn.pipeline.send)
      ctx.head.committed(headOf(cursor), cursor.versions)
      return { head: cursor.position, outcomes }
    })
  )

/**
 * Commits a batch in one round trip from the writer's belief when it has one, else (or when `connect_append` finds it
 * stale) in two, from the head read under the lock.
 */
const commitOnce = (ctx: AppendContext, batch: ReadonlyArray<Pending>) => {
  const head = ctx.head.head()
  if (head === undefined) return commitBatch(ctx, batch, fromLock(ctx, batch))
  return commitBatch(ctx, batch, fromHead(ctx, head, batch)).pipe(
    Effect.catchIf(isStale, (error) =>
      Effect.suspend(() => {
        if ((error as { code?: string }).code === "CN004") ctx.head.pause()
        return commitBatch(ctx, batch, fromLock(ctx, batch))
      })
    )
  )
}

/**
 * One attempt at a batch: in one transaction, and if that fails for one request's sake or on a server error (a
 * statement timeout in one request's projection), again with each request isolated, so the others still commit.
 */
export const attempt = (ctx: AppendContext, batch: ReadonlyArray<Pending>) =>
  commitOnce(ctx, batch).pipe(
    Effect.catchAllCause((cause) => {
      // A defect (a projection's bug) is one request's too.
      const failure = Cause.failureOption(cause)
      const kind = Option.isSome(failure) ? Recovery.classify(failure.value) : "refused"
      return batch.length > 1 && (kind === "refused" || kind === "failed") ? commitIsolated(ctx, batch) : Effect.failCause(cause)
    })
  )
