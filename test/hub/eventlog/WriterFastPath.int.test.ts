/**
 * The writer's fast path (PgWriterFast) is taken: once the writer knows the head, an append from one caller is one
 * transaction that commits, not a failed attempt and the slow path after it. A fast path that always failed would still
 * append everything correctly (its failures go the slow way), so only the database's own count of rolled-back
 * transactions tells.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import type { Projection } from "../../../core/Projection.ts"
import { ProjectionSql } from "../../../core/ProjectionSql.ts"
import { EventLog } from "../../../core/EventLog.ts"
import { EventMeta, WorkspaceCreated } from "../../../core/Events.ts"
import { uuidv7 } from "../../../core/Ids.ts"
import * as Migrations from "../../../hub/db/Migrations.ts"
import * as PgEventLog from "../../../hub/eventlog/PgEventLog.ts"
import * as Main from "../../../hub/Main.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"

const layer = PgEventLog.layer({ inline: Main.INLINE_PROJECTIONS }).pipe(
  Layer.provideMerge(Migrations.layer),
  Layer.provideMerge(TestDatabase.layer),
  Layer.orDie
)

const meta = new EventMeta({ actor: { kind: "system" } })

describe("PgWriter fast path", () => {
  it.layer(layer, { timeout: 60_000 })((it) => {
    it.effect("an append from a writer that knows the head commits in one transaction, with no attempt rolled back", () =>
      Effect.gen(function*() {
        const log = yield* EventLog
        const sql = yield* SqlClient.SqlClient
        const stream = `workspace-${uuidv7()}`
        const append = (i: number) =>
          log.append(stream, [new WorkspaceCreated({ workspaceId: uuidv7() as never, name: `w${i}` })], {
            expectedVersion: i,
            workspaceId: null,
            meta
          })
        // A backend sends its counts at the end of a transaction at most once a second: each pause and append after
        // it makes the writer's backend send what came before.
        // (A timer, not Effect.sleep: the test clock does not move by itself.)
        const pause = Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 1100)))
        const flushed = Effect.zipRight(pause, append(0).pipe(Effect.ignore))
        const rollbacks = Effect.gen(function*() {
          yield* sql`select pg_stat_clear_snapshot()`
          const rows = yield* sql<{ n: string }>`
            select xact_rollback::text as n from pg_stat_database where datname = current_database()`
          return Number(rows[0]!.n)
        })
        // The first append reads the head under the lock; the writer knows it from then on.
        yield* append(0)
        yield* flushed
        const before = yield* rollbacks
        for (let i = 1; i <= 30; i++) {
          const result = yield* append(i)
          expect(result.version).toBe(i + 1)
        }
        yield* flushed
        yield* flushed
        expect((yield* rollbacks) - before).toBe(0)
      }))
  })
})

/** An inline projection that goes asynchronous before writing: one row per event into `async_rows`. */
const asyncRows: Projection<ProjectionSql> = {
  name: "async_rows",
  mode: "inline",
  apply: (events) =>
    Effect.zipRight(
      Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 5))),
      Effect.flatMap(ProjectionSql, (q) =>
        q.execute(`insert into async_rows select unnest($1::bigint[])`, [events.map((e) => e.position)]))
    ),
  reset: Effect.void
}

const asyncLayer = Layer.unwrapEffect(Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe(`create table if not exists async_rows (position bigint not null)`)
  return PgEventLog.layer({ inline: [...Main.INLINE_PROJECTIONS, asyncRows] })
})).pipe(
  Layer.provideMerge(Migrations.layer),
  Layer.provideMerge(TestDatabase.layer),
  Layer.orDie
)

describe("PgWriter fast path with a projection that goes asynchronous", () => {
  it.layer(asyncLayer, { timeout: 60_000 })((it) => {
    it.effect("falls back to the slow path, and the projection's statements go once, not also with the next message", () =>
      Effect.gen(function*() {
        const log = yield* EventLog
        const sql = yield* SqlClient.SqlClient
        const stream = `workspace-${uuidv7()}`
        for (let i = 0; i < 20; i++) {
          yield* log.append(stream, [new WorkspaceCreated({ workspaceId: uuidv7() as never, name: `a${i}` })], {
            expectedVersion: i,
            workspaceId: null,
            meta
          })
        }
        const rows = yield* sql<{ position: string }>`select position::text from async_rows order by 1`
        const events = yield* sql<{ position: string }>`select position::text from events where stream = ${stream} order by 1`
        expect(rows.map((r) => Number(r.position)).sort((a, b) => a - b)).toEqual(events.map((e) => Number(e.position)).sort((a, b) => a - b))
      }))
  })
})
