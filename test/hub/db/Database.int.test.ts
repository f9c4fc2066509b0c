import { describe, expect, it } from "@effect/vitest"
import * as Crypto from "node:crypto"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import { inject } from "vitest"
import { EventLog } from "../../../core/EventLog.ts"
import { EventMeta, WorkspaceCreated } from "../../../core/Events.ts"
import { uuidv7, WorkspaceId } from "../../../core/Ids.ts"
import * as Verify from "../../../audit/Verify.ts"
import * as Admin from "../../../hub/commands/Admin.ts"
import * as Database from "../../../hub/db/Database.ts"
import * as Main from "../../../hub/Main.ts"
import * as Migrations from "../../../hub/db/Migrations.ts"
import * as PgEventLog from "../../../hub/eventlog/PgEventLog.ts"
import { rewrites } from "../../support/Rewrites.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"

const adminQuery = (url: string, statement: string) => Effect.promise(() => TestDatabase.queryOnce(url, statement))

/**
 * A fresh database owned by the test server's superuser and a login role for the hub with nothing granted: the
 * two-role setup of an external server. The role is dropped after the database (its grants live there).
 */
const twoRoles = Effect.gen(function*() {
  const adminUrl = inject("adminDatabaseUrl")
  const role = `connect_t_hub_${Crypto.randomBytes(4).toString("hex")}`
  const password = Crypto.randomBytes(12).toString("hex")
  yield* Effect.acquireRelease(
    adminQuery(adminUrl, `create role ${role} login password '${password}'`),
    // Postgres 16+ keeps who granted a membership: one the hub's role granted while migrating (connect_app to
    // connect_writer) must go before the role can.
    () =>
      adminQuery(adminUrl, `drop role if exists ${role}`).pipe(
        Effect.catchAllDefect(() =>
          Effect.zipRight(
            adminQuery(adminUrl, `revoke connect_app from connect_writer granted by ${role}`),
            adminQuery(adminUrl, `drop role if exists ${role}`)
          )
        ),
        Effect.catchAllDefect(() => Effect.void)
      )
  )
  const ownerUrl = yield* TestDatabase.makeTestDatabaseUrl
  const url = new URL(ownerUrl)
  url.username = role
  url.password = password
  return { role, ownerUrl, url: url.toString() }
})

/** The hub's stack over `Database.layer`, as Main builds it: migrations, then the event log with inline projections. */
const hubStack = (options: Database.Options) =>
  PgEventLog.layer({ inline: Main.INLINE_PROJECTIONS }).pipe(
    Layer.provideMerge(Migrations.layer),
    Layer.provideMerge(Database.layer(options))
  )

const meta = new EventMeta({ actor: { kind: "admin", id: "test" } })


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

  it.live("with DATABASE_OWNER_URL, migrations run as the owner and the hub's role can only append to and read events", () =>
    Effect.gen(function*() {
      const { role, ownerUrl, url } = yield* twoRoles
      const ctx = yield* Layer.build(hubStack({ dataDir: "/nonexistent", databaseUrl: url, databaseOwnerUrl: ownerUrl }))
      const run = <A, E>(effect: Effect.Effect<A, E, EventLog | SqlClient.SqlClient>) => Effect.provide(effect, ctx)
      const sql = yield* run(SqlClient.SqlClient)
      expect((yield* sql<{ user: string }>`select current_user as user`)[0]!.user).toBe(role)
      // The hub works: appends (events, stream heads, read models), reads, workspace-scoped reads.
      const log = yield* run(EventLog)
      const workspaceId = WorkspaceId.make(uuidv7())
      yield* log.append(`workspace-${workspaceId}`, [new WorkspaceCreated({ workspaceId, name: "two roles" })], {
        expectedVersion: "no_stream",
        workspaceId,
        meta
      })
      expect((yield* sql<{ n: number }>`select count(*)::int as n from workspaces`)[0]!.n).toBe(1)
      // Workspace-scoped reads switch to connect_app, through the role's membership.
      expect(yield* run(Admin.listApiKeys(workspaceId))).toEqual([])
      expect(yield* run(Verify.verify())).toMatchObject({ ok: true, count: 1 })
      // History cannot be rewritten through the hub's connection.
      for (const statement of rewrites) {
        const result = yield* Effect.either(sql.unsafe(statement))
        expect([statement, Either.isLeft(result)]).toEqual([statement, true])
      }
      const [owner] = yield* adminQuery(ownerUrl, `select pg_get_userbyid(relowner) as owner from pg_class where relname = 'events'`)
      expect(owner.owner).not.toBe(role)
      expect(yield* run(Verify.verify())).toMatchObject({ ok: true, count: 1 })
    }).pipe(Effect.scoped), 60_000)

  it.live("the hub's role reads the log offline without DATABASE_OWNER_URL once migrated", () =>
    Effect.gen(function*() {
      const { ownerUrl, url } = yield* twoRoles
      yield* Layer.build(hubStack({ dataDir: "/nonexistent", databaseUrl: url, databaseOwnerUrl: ownerUrl })).pipe(Effect.scoped)
      const ctx = yield* Layer.build(hubStack({ dataDir: "/nonexistent", databaseUrl: url, attach: true }))
      expect(yield* Verify.verify().pipe(Effect.provide(ctx))).toMatchObject({ ok: true, count: 0 })
    }).pipe(Effect.scoped), 60_000)

  it.live("a hub whose role may create in public but not in the database migrates and starts (an upgrade on DATABASE_URL)", () =>
    Effect.gen(function*() {
      const { role, ownerUrl, url } = yield* twoRoles
      // What a single-role external setup usually grants: tables in public, roles for the hub's own, no CREATE on the
      // database itself (which creating a schema needs).
      const adminUrl = inject("adminDatabaseUrl")
      yield* adminQuery(adminUrl, `alter role ${role} createrole`)
      // The hub's shared roles may exist already (made by other tests' migrations); a role that had made them itself
      // would administer them, which Postgres 16+ requires for granting them (CREATEROLE alone no longer does).
      for (const shared of ["connect_app", "connect_writer"]) {
        yield* adminQuery(
          adminUrl,
          `do $$ begin if not exists (select from pg_roles where rolname = '${shared}') then create role ${shared} nologin; end if; end $$`
        ).pipe(Effect.catchAllDefect(() => Effect.void))
        yield* adminQuery(adminUrl, `grant ${shared} to ${role} with admin option`)
      }
      // Granted by the superuser too, so that revoking the test role's own grant at cleanup (Postgres 16+) leaves it.
      yield* adminQuery(adminUrl, `grant connect_app to connect_writer`)
      yield* adminQuery(ownerUrl, `grant create on schema public to ${role}`)
      const ctx = yield* Layer.build(hubStack({ dataDir: "/nonexistent", databaseUrl: url }))
      expect(yield* Verify.verify().pipe(Effect.provide(ctx))).toMatchObject({ ok: true })
    }).pipe(Effect.scoped), 60_000)

  it.live("a hub whose role owns events says so loudly at startup", () =>
    Effect.gen(function*() {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      const lines: Array<string> = []
      const capture: Console.Console = {
        ...(yield* Effect.console),
        error: (...args: ReadonlyArray<unknown>) => Effect.sync(() => void lines.push(args.join(" "))),
        log: (...args: ReadonlyArray<unknown>) => Effect.sync(() => void lines.push(args.join(" ")))
      }
      yield* Layer.build(hubStack({ dataDir: "/nonexistent", databaseUrl: url })).pipe(Effect.withConsole(capture))
      expect(lines.join("\n")).toMatch(/WARNING.*owns the events table.*rewrite history.*DATABASE_OWNER_URL/s)
    }).pipe(Effect.scoped), 60_000)

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
