/**
 * Runs projections over the Postgres event log: async ones follow the log from their checkpoint, and any projection
 * can be rebuilt from position 0. Each batch's writes and its checkpoint commit in one transaction (exactly-once).
 */
import { SqlClient } from "@effect/sql"
import { Context, Effect, Stream } from "effect"
import { EventLog, EventLogError, pagesAhead, type StoredEvent } from "../core/EventLog.ts"
import type { Projection } from "../core/Projection.ts"
import { APPEND_LOCK_KEY } from "./PgEventLog.ts"
import { type ProjectionSql, provideFromSqlClient } from "./ProjectionSql.ts"

const projectionError = (name: string) => (cause: unknown) =>
  cause instanceof EventLogError
    ? cause
    : new EventLogError({
        reason: "Projection",
        message: `projection ${name} failed: ${cause instanceof Error ? cause.message : String(cause)}`,
        cause
      })

/** The stored checkpoint of a projection (0 when it never ran). */
export const checkpoint = (name: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.unsafe<{ position: number }>(`select position from projection_checkpoints where name = $1`, [name])
  ).pipe(
    Effect.map((rows) => (rows.length === 0 ? 0 : Number(rows[0]!.position))),
    Effect.mapError(projectionError(name))
  )

const saveCheckpoint = (name: string, position: number) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.unsafe(
      `insert into projection_checkpoints (name, position) values ($1, $2)
         on conflict (name) do update set position = excluded.position`,
      [name, position]
    )
  )

const applyBatch = (projection: Projection<ProjectionSql>, events: ReadonlyArray<StoredEvent>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.withTransaction(
      Effect.zipRight(
        provideFromSqlClient(projection.apply(events)),
        saveCheckpoint(projection.name, events[events.length - 1]!.position)
      )
    )
  ).pipe(Effect.mapError(projectionError(projection.name)))

/** Follows the log from the projection's checkpoint forever, applying batches of up to `batchSize` events. */
export const follow = Effect.fn("ProjectionRunner.follow")(function* (
  projection: Projection<ProjectionSql>,
  batchSize = 1000
) {
  const log = yield* EventLog
  const from = yield* checkpoint(projection.name)
  yield* log.subscribe(from).pipe(
    Stream.groupedWithin(batchSize, "20 millis"),
    Stream.runForEach((chunk) => applyBatch(projection, [...chunk]))
  )
})

/**
 * Drops what the projection wrote and replays the whole log into it, in one transaction. The append lock is held for
 * the duration, so an inline projection cannot miss or double-apply an append that commits during the rebuild.
 * Returns the number of events replayed.
 */
export const rebuild = Effect.fn("ProjectionRunner.rebuild")(function* (
  projection: Projection<ProjectionSql>,
  options: { readonly pageSize?: number; readonly onProgress?: (position: number) => Effect.Effect<void> } = {}
) {
  const sql = yield* SqlClient.SqlClient
  const log = yield* EventLog
  return yield* sql
    .withTransaction(
      Effect.gen(function* () {
        yield* sql.unsafe(`select pg_advisory_xact_lock(${APPEND_LOCK_KEY})`)
        yield* provideFromSqlClient(projection.reset)
        let cursor = 0
        let count = 0
        // Pages are read through the pool, outside this transaction (holding the append lock keeps the log still), so
        // the next page is read and decoded while this one is applied: the two cost about the same.
        const read = (after: number, limit: number) =>
          log.readAll(after, limit).pipe(
            Effect.mapInputContext((context: Context.Context<never>) => Context.omit(SqlClient.TransactionConnection)(context))
          )
        yield* pagesAhead(read, options.pageSize ?? 20_000).pipe(
          Stream.runForEach((page) =>
            Effect.gen(function* () {
              yield* provideFromSqlClient(projection.apply(page))
              cursor = page[page.length - 1]!.position
              count += page.length
              if (options.onProgress) yield* options.onProgress(cursor)
            })
          )
        )
        yield* saveCheckpoint(projection.name, cursor)
        return count
      })
    )
    .pipe(Effect.mapError(projectionError(projection.name)))
})
