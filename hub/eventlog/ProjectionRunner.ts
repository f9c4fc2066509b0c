/**
 * Runs projections over the Postgres event log: async ones follow the log from their checkpoint, moved by
 * compare-and-set in the same transaction as the batch's writes (exactly once, whatever else follows), and any
 * projection can be rebuilt from position 0 into shadow tables that are swapped in (see `PgShadowTables`).
 */
import { SqlClient } from "@effect/sql"
import { Chunk, Context, Effect, Layer, Schedule, Schema, Stream } from "effect"
import { messageOf } from "../../core/ErrorMessage.ts"
import { EventLog, EventLogError, pagesAhead, type StoredEvent } from "../../core/EventLog.ts"
import { type CatchUpOptions, type Projection, ProjectionCatchUp } from "../../core/Projection.ts"
import { APPEND_LOCK_KEY } from "./PgEventLog.ts"
import * as PgShadowTables from "./PgShadowTables.ts"
import { type ProjectionSql, provideFromSqlClient } from "../../core/ProjectionSql.ts"

/** Another runner moved the projection's checkpoint since this one read it: the batch was not applied. */
export class CheckpointConflict extends Schema.TaggedError<CheckpointConflict>()("CheckpointConflict", {
  name: Schema.String,
  expected: Schema.Number,
  attempted: Schema.Number
}) {
  override get message() {
    return `checkpoint of ${this.name} is no longer at ${this.expected}: batch up to ${this.attempted} not applied`
  }
}

const projectionError = (name: string) => (cause: unknown) =>
  cause instanceof EventLogError
    ? cause
    : new EventLogError({
        reason: "Projection",
        message: `projection ${name} failed: ${messageOf(cause)}`,
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

/**
 * Moves a checkpoint from `expected` to `position` if it is still at `expected` (no row counts as 0), and says whether
 * it did. The row lock taken here is held to commit, so of two runners applying the same batch the second waits, then
 * finds the checkpoint moved and applies nothing.
 */
export const storeCheckpoint = (name: string, expected: number, position: number) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.unsafe<{ n: number }>(
      `with moved as (
         update projection_checkpoints set position = $3 where name = $1 and position = $2 returning 1
       ), created as (
         insert into projection_checkpoints (name, position) select $1, $3
          where $2 = 0 and not exists (select from moved)
         on conflict (name) do nothing returning 1
       )
       select (select count(*) from moved) + (select count(*) from created) as n`,
      [name, expected, position]
    )
  ).pipe(Effect.map((rows) => Number(rows[0]!.n) === 1))

/** Applies a batch and moves the checkpoint from `expected`, in one transaction; nothing at all on a conflict. */
const applyBatch = (projection: Projection<ProjectionSql>, expected: number, events: ReadonlyArray<StoredEvent>) => {
  const last = events[events.length - 1]!.position
  return Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.withTransaction(
      Effect.gen(function* () {
        // The checkpoint first: its row lock is what keeps a second runner from applying the batch as well.
        if (!(yield* storeCheckpoint(projection.name, expected, last))) {
          return yield* new CheckpointConflict({ name: projection.name, expected, attempted: last })
        }
        yield* provideFromSqlClient(projection.apply(events))
      })
    )
  ).pipe(Effect.mapError((e) => (e instanceof CheckpointConflict ? e : projectionError(projection.name)(e))))
}

/**
 * A follower that has caught up waits this long after applying before it reads again, so that what was committed
 * meanwhile is read and applied together: one read and one checkpoint transaction per interval however many commits,
 * instead of one of each per commit (with a public link's every request an event, following the stats rollup per
 * commit cost the hub 2-4x its CPU per request at one client). A follower behind reads on without waiting.
 */
export const FOLLOW_INTERVAL = "250 millis"

/**
 * Follows the log from the projection's checkpoint forever, applying batches of up to `batchSize` events, read at most
 * once per `FOLLOW_INTERVAL` once caught up. When another runner (a second hub, a rebuild) moved the checkpoint, it
 * starts again from wherever that is.
 */
export const follow = Effect.fn("ProjectionRunner.follow")(function* (
  projection: Projection<ProjectionSql>,
  batchSize = 1000
) {
  const log = yield* EventLog
  const fromCheckpoint: Effect.Effect<never, EventLogError, SqlClient.SqlClient> = Effect.gen(function* () {
    let cursor = yield* checkpoint(projection.name)
    // The subscription reads when pulled: the wait after a short read is what spaces its reads (and this runner's
    // transactions) out; commits meanwhile are read at the next pull, nothing is skipped.
    return yield* log.subscribe(cursor).pipe(
      Stream.runForEachChunk((chunk) =>
        Effect.gen(function*() {
          const all = Chunk.toReadonlyArray(chunk)
          for (let i = 0; i < all.length; i += batchSize) {
            const events = all.slice(i, i + batchSize)
            yield* applyBatch(projection, cursor, events)
            cursor = events[events.length - 1]!.position
          }
          if (all.length < batchSize) yield* Effect.sleep(FOLLOW_INTERVAL)
        })
      ),
      Effect.zipRight(Effect.die("event log subscription ended")),
      Effect.catchTag("CheckpointConflict", (conflict) =>
        Effect.zipRight(Effect.logDebug(conflict.message), Effect.suspend(() => fromCheckpoint))
      )
    )
  })
  return yield* fromCheckpoint
})

/**
 * Applies every event after the projection's checkpoint up to the head as it is when called, in batches of `batchSize`
 * read one page ahead, each with its checkpoint moved by compare-and-set in the same transaction (a follower running
 * beside it is no harm: on a conflict it starts again from wherever the checkpoint is). Returns the position reached.
 */
export const catchUp = Effect.fn("ProjectionRunner.catchUp")(function*(
  projection: Projection<ProjectionSql>,
  options: CatchUpOptions & { readonly batchSize?: number } = {}
) {
  const log = yield* EventLog
  const head = (yield* log.head).position
  const batchSize = options.batchSize ?? 5_000
  const fromCheckpoint: Effect.Effect<number, EventLogError, SqlClient.SqlClient> = Effect.gen(function*() {
    let cursor = yield* checkpoint(projection.name)
    if (cursor >= head) return cursor
    yield* pagesAhead(log.readAll, batchSize, cursor).pipe(
      Stream.takeUntil((page) => page[page.length - 1]!.position >= head),
      Stream.runForEach((page) =>
        Effect.gen(function*() {
          yield* applyBatch(projection, cursor, page)
          cursor = page[page.length - 1]!.position
          if (options.onProgress) yield* options.onProgress(cursor, head)
        })
      )
    )
    return cursor
  }).pipe(
    Effect.catchTag("CheckpointConflict", (conflict) =>
      Effect.zipRight(Effect.logDebug(conflict.message), Effect.suspend(() => fromCheckpoint))
    )
  )
  return yield* fromCheckpoint
})

/** `ProjectionCatchUp` over this runner, on the context's `EventLog` and `SqlClient`. */
export const layerCatchUp: Layer.Layer<ProjectionCatchUp, never, EventLog | SqlClient.SqlClient> = Layer.effect(
  ProjectionCatchUp,
  Effect.map(Effect.context<EventLog | SqlClient.SqlClient>(), (context) =>
    ProjectionCatchUp.of({
      run: (projection, options) => Effect.provide(catchUp(projection, options), context)
    }))
)

/**
 * Follows each async projection for as long as the layer lives: a failure (the database gone, a batch refused) is
 * logged and the follower starts again from its checkpoint after a backoff (1 s doubling to 30 s); closing the scope
 * interrupts the followers, and a batch cut short rolls back with its checkpoint.
 */
export const layerFollow = (
  projections: ReadonlyArray<Projection<ProjectionSql>>
): Layer.Layer<never, never, EventLog | SqlClient.SqlClient> =>
  Layer.scopedDiscard(
    Effect.forEach(
      projections,
      (projection) =>
        follow(projection).pipe(
          Effect.tapError((e) => Effect.logWarning(`projection ${projection.name} stopped: ${e.message}; restarting`)),
          Effect.retry(Schedule.exponential("1 second").pipe(Schedule.union(Schedule.spaced("30 seconds")))),
          Effect.forkScoped
        ),
      { discard: true }
    )
  )

/** Options of a rebuild. */
export interface RebuildOptions {
  /** Events read and applied at a time (default 20,000). */
  readonly pageSize?: number
  /** Called after each page is applied, with the position reached. */
  readonly onProgress?: (position: number) => Effect.Effect<void>
}

/**
 * Rebuilds a projection from position 0 into shadow copies of its tables, then swaps them in, in one transaction: the
 * replay runs without the append lock (appends go on, into the live tables), the lock is taken only to replay the
 * tail and swap, so a reader sees the old tables or the complete new ones, never a half-built one. Needs the owner
 * role (it creates, drops and renames tables). Returns the number of events replayed.
 */
export const rebuild = Effect.fn("ProjectionRunner.rebuild")(function* (
  projection: Projection<ProjectionSql>,
  options: RebuildOptions = {}
) {
  const sql = yield* SqlClient.SqlClient
  const log = yield* EventLog
  const tables = projection.tables ?? [projection.name]
  const pageSize = options.pageSize ?? 20_000
  // Pages are read through the pool, outside this transaction, so the next page is read and decoded while this one
  // is applied: the two cost about the same.
  const read = (after: number, limit: number) =>
    log.readAll(after, limit).pipe(
      Effect.mapInputContext((context: Context.Context<never>) => Context.omit(SqlClient.TransactionConnection)(context))
    )
  return yield* sql
    .withTransaction(
      Effect.gen(function* () {
        const shadows = yield* PgShadowTables.create(projection.name, tables)
        let cursor = 0
        let count = 0
        const replay = (after: number) =>
          pagesAhead(read, pageSize, after).pipe(
            Stream.runForEach((page) =>
              Effect.gen(function* () {
                yield* shadows.writing(provideFromSqlClient(projection.apply(page)))
                cursor = page[page.length - 1]!.position
                count += page.length
                if (options.onProgress) yield* options.onProgress(cursor)
              })
            )
          )
        yield* replay(0)
        // The tail: under the lock no append commits, so once read to the end the shadows hold the whole log, and the
        // next append's inline projections write into the swapped-in tables.
        yield* sql.unsafe(`select pg_advisory_xact_lock(${APPEND_LOCK_KEY})`)
        // Appends wait from here on: a reader holding a live table must not make the swap (and them) wait for long.
        yield* sql.unsafe(`set local lock_timeout = '5s'`)
        yield* replay(cursor)
        yield* shadows.swap
        yield* sql.unsafe(
          `insert into projection_checkpoints (name, position) values ($1, $2)
             on conflict (name) do update set position = excluded.position`,
          [projection.name, cursor]
        )
        return count
      })
    )
    .pipe(Effect.mapError(projectionError(projection.name)))
})
