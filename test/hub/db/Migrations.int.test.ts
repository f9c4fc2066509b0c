import { describe, expect, it } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect, Layer } from "effect"
import * as Migrations from "../../../hub/db/Migrations.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"

const recorded = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql.unsafe<{ id: number }>(`select migration_id as id from connect_migrations order by 1`)).pipe(
    Effect.map((rows) => rows.map((row) => Number(row.id)))
  )

const hasTtlColumn = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql.unsafe<{ n: number }>(
    `select count(*)::int as n from information_schema.columns where table_name = 'agents' and column_name = 'token_ttl_seconds'`
  )).pipe(Effect.map((rows) => rows[0]!.n === 1))

// A database that recorded 0024 but never ran 0022: what a hub that ran ahead of a branch merged late would hold.
const missing0022 = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql.unsafe(`delete from connect_migrations where migration_id = 22`))

describe("Migrations", () => {
  it.layer(TestDatabase.layer, { timeout: 60_000 })("a database that missed a migration below its newest", (it) => {
    it.effect("the hub's start applies it, once, and the next start has nothing to do", () =>
      Effect.gen(function*() {
        yield* Migrations.run
        const all = yield* recorded
        expect(all).toContain(22)
        expect(Math.max(...all)).toBe(Migrations.latest)
        yield* missing0022
        yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(`alter table agents drop column token_ttl_seconds`))
        expect(yield* recorded).toEqual(all.filter((id) => id !== 22))

        yield* Layer.build(Migrations.layer).pipe(Effect.scoped)
        expect(yield* recorded).toEqual(all)
        expect(yield* hasTtlColumn).toBe(true)
        // Current now: running again applies nothing and fails on nothing (0022 is not re-run: its column exists).
        yield* Migrations.run
        expect(yield* recorded).toEqual(all)
      }))

    it.effect("one that fails against the newer schema leaves nothing behind and the start fails naming it", () =>
      Effect.gen(function*() {
        yield* Migrations.run
        const all = yield* recorded
        // Its column is there (a schema it cannot be applied to again): re-running 0022 fails.
        yield* missing0022
        const { message } = yield* Layer.build(Migrations.layer).pipe(Effect.scoped, Effect.flip)
        expect(message).toContain("0022_agent_token_ttl")
        expect(message).toContain("applied late")
        expect(message).toContain("token_ttl_seconds")
        expect(yield* recorded).toEqual(all.filter((id) => id !== 22))
      }))
  })
})
