import { describe, expect, it } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect, Layer } from "effect"
import * as Migrations from "../../../hub/db/Migrations.ts"
import agentTokenTtl from "../../../hub/db/migrations/0022_agent_token_ttl.ts"
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
    it.effect("is refused at the hub's start, naming it, and nothing is applied; applied by hand and recorded, it starts", () =>
      Effect.gen(function*() {
        yield* Migrations.run
        const all = yield* recorded
        expect(Math.max(...all)).toBe(Migrations.latest)
        yield* missing0022
        yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(`alter table agents drop column token_ttl_seconds`))
        const { message } = yield* Layer.build(Migrations.layer).pipe(Effect.scoped, Effect.flip)
        expect(message).toContain("0022_agent_token_ttl")
        expect(message).toContain(`has migration ${String(Migrations.latest).padStart(4, "0")}`)
        expect(yield* recorded).toEqual(all.filter((id) => id !== 22))
        expect(yield* hasTtlColumn).toBe(false)

        // Applied by hand (here: its own SQL, which fits this schema) and recorded: the hub starts again.
        yield* agentTokenTtl
        yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
          sql.unsafe(`insert into connect_migrations (migration_id, name) values (22, 'agent_token_ttl')`))
        yield* Layer.build(Migrations.layer).pipe(Effect.scoped)
        expect(yield* recorded).toEqual(all)
        expect(yield* hasTtlColumn).toBe(true)
      }))
  })
})
