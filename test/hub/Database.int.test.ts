import { describe, expect, it } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Database from "../../hub/Database.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

describe("Database", () => {
  it.layer(TestDatabase.layer)("on a fresh test database", (it) => {
    it.effect("returns int8 as a number and numeric as a string", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const [row] = yield* sql<{ position: unknown; big: unknown; positions: unknown; amount: unknown }>`
          select 42::int8 as position, 9007199254740991::int8 as big,
                 array[1, 2]::int8[] as positions, 1.50::numeric as amount`
        expect(row).toEqual({ position: 42, big: 9007199254740991, positions: [1, 2], amount: "1.50" })
      }))

    it.effect("the database is empty and private to this file", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const [row] = yield* sql<{ name: string; tables: number }>`
          select current_database() as name,
                 (select count(*) from pg_tables where schemaname = 'public') as tables`
        expect(row.name).toMatch(/^connect_t_[0-9a-f]{12}$/)
        expect(row.tables).toBe(0)
      }))
  })

  // Live clock: the retry schedule really waits.
  it.live("an unreachable DATABASE_URL fails at startup with a DatabaseError naming the address", () =>
    Effect.gen(function*() {
      const started = Date.now()
      const result = yield* Layer.build(
        Database.layer({ dataDir: "/nonexistent", databaseUrl: "postgres://postgres:secret@127.0.0.1:1/connect" })
      ).pipe(Effect.scoped, Effect.either)
      const elapsed = Date.now() - started
      expect(Either.isLeft(result)).toBe(true)
      const error = (result as Either.Left<Database.DatabaseError, unknown>).left
      expect(error).toBeInstanceOf(Database.DatabaseError)
      expect(error.reason).toBe("Unreachable")
      expect(error.message).toContain("127.0.0.1:1/connect")
      expect(error.message).toContain("ECONNREFUSED")
      expect(error.message).not.toContain("secret")
      expect(error.message).not.toContain("\n")
      // Bounded retry: about 5 s of attempts, never a hang.
      expect(elapsed).toBeLessThan(10_000)
    }), 20_000)

  it("describes and redacts database URLs", () => {
    expect(Database.describeUrl("postgres://u:pw@db.example:6543/app")).toBe("db.example:6543/app")
    expect(Database.redactUrl("postgres://u:pw@db.example:6543/app")).toBe("postgres://u:***@db.example:6543/app")
    expect(Database.describe({ dataDir: "/d", databaseUrl: "postgres://u:pw@h/x" })).toBe("DATABASE_URL h:5432/x")
  })
})
