/**
 * `connect audit verify` and `connect hub verify-log` as an investigator runs them, as real processes against a real
 * log: OK with the count, the first broken position after a superuser rewrote a row, and a clear error when Postgres
 * cannot be reached; repeated runs, each a process of its own, coalesced into one record per window with every run
 * counted.
 */
import { PgClient } from "@effect/sql-pg"
import { SqlClient } from "@effect/sql"
import { Effect, Layer, Redacted, Scope, Exit } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { EventLog } from "../../core/EventLog.ts"
import { EventMeta, WorkspaceCreated } from "../../core/Events.ts"
import { uuidv7 } from "../../core/Ids.ts"
import * as Migrations from "../../hub/db/Migrations.ts"
import * as PgEventLog from "../../hub/eventlog/PgEventLog.ts"
import { killTracked, spawn } from "../support/processes.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

let scope: Scope.CloseableScope
let url: string

const run = <A, E>(effect: Effect.Effect<A, E, EventLog | SqlClient.SqlClient>, on = () => url) =>
  Effect.runPromise(
    effect.pipe(
      Effect.provide(
        PgEventLog.layer().pipe(
          Layer.provideMerge(Layer.effectDiscard(Migrations.run)),
          Layer.provideMerge(PgClient.layer({ url: Redacted.make(on()) }))
        )
      ),
      Effect.scoped
    )
  )

beforeAll(async () => {
  scope = Effect.runSync(Scope.make())
  url = await Effect.runPromise(Scope.extend(TestDatabase.makeTestDatabaseUrl, scope))
  await run(
    Effect.gen(function* () {
      const log = yield* EventLog
      for (let i = 1; i <= 12; i++) {
        yield* log.append(`verify-${i % 4}`, [new WorkspaceCreated({ workspaceId: uuidv7() as never, name: `w${i}` })], {
          expectedVersion: "any",
          workspaceId: null,
          meta: new EventMeta({ actor: { kind: "admin", id: "e2e" } })
        })
      }
    })
  )
})

afterAll(async () => {
  killTracked()
  await Effect.runPromise(Scope.close(scope, Exit.void))
})

const connect = (args: ReadonlyArray<string>, databaseUrl: string) =>
  spawn("node", ["bin/connect.js", ...args], { env: { ...process.env, DATABASE_URL: databaseUrl } })

describe("connect audit verify", () => {
  it("prints OK with the count when the chain is intact, then the first broken position after tampering", async () => {
    const ok = connect(["audit", "verify"], url)
    expect(await ok.exited(60_000)).toEqual({ code: 0, signal: null })
    expect(ok.stdout()).toMatch(/^OK: 12 events, hash chain intact/m)

    // As a superuser would: triggers off, history rewritten, triggers on.
    await run(
      Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql.unsafe(`alter table events disable trigger events_no_update_delete;
                    update events set meta = jsonb_set(meta, '{actor,id}', '"someone-else"') where position = 9;
                    alter table events enable trigger events_no_update_delete`)
      )
    )
    const broken = connect(["audit", "verify"], url)
    expect((await broken.exited(60_000)).code).toBe(3)
    expect(broken.stdout()).toMatch(/^BROKEN at position 9: position 9 was altered.*\(8 events verified before it\)/m)

    const json = connect(["hub", "verify-log", "--json", "--independent"], url)
    expect((await json.exited(60_000)).code).toBe(3)
    expect(JSON.parse(json.stdout())).toMatchObject({ ok: false, position: 9, reason: "hash_mismatch", count: 8 })
  })

  it("names every break, not only the first: --json lists them, in both modes", async () => {
    // On top of position 9 (altered above): 4 altered, 7 deleted, 11 unlinked from 10.
    await run(
      Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql.unsafe(`alter table events disable trigger events_no_update_delete;
                    update events set data = jsonb_set(data, '{name}', '"renamed"') where position = 4;
                    delete from events where position = 7;
                    update events set prev_hash = decode(repeat('11', 32), 'hex') where position = 11;
                    alter table events enable trigger events_no_update_delete`)
      )
    )
    const expected = [
      { position: 4, reason: "hash_mismatch" },
      { position: 7, reason: "gap", through: 7 },
      { position: 9, reason: "hash_mismatch" },
      { position: 11, reason: "broken_link" },
      { position: 11, reason: "hash_mismatch" }
    ]
    for (const args of [["audit", "verify", "--json"], ["hub", "verify-log", "--json", "--independent"]]) {
      const json = connect(args, url)
      expect((await json.exited(60_000)).code).toBe(3)
      const result = JSON.parse(json.stdout())
      expect(result).toMatchObject({ ok: false, position: 4, reason: "hash_mismatch", count: 3 })
      expect(result.breaks.map((b: { position: number; reason: string; through?: number }) =>
        b.through === undefined ? { position: b.position, reason: b.reason } : { position: b.position, reason: b.reason, through: b.through }
      )).toEqual(expected)
    }
    const text = connect(["audit", "verify"], url)
    expect((await text.exited(60_000)).code).toBe(3)
    expect(text.stdout()).toMatch(/^BROKEN at position 4: position 4 was altered.*\(3 events verified before it\)/m)
    expect(text.stdout()).toMatch(/^ {2}position 7 is missing$/m)
    expect(text.stdout()).toMatch(/^ {2}position 11 does not link to the hash of position 10$/m)
    expect(text.stdout()).toMatch(/5 breaks/)
  })

  it("an unreachable Postgres is a one-line error naming it, exit code 1", async () => {
    const down = connect(["audit", "verify"], "postgres://postgres@127.0.0.1:1/connect")
    expect((await down.exited(60_000)).code).toBe(1)
    expect(down.stderr()).toMatch(/connect: Cannot reach Postgres at 127\.0\.0\.1:1/)
    expect(down.stdout()).toBe("")
  })

  it("--help explains what verify checks and its exit codes", async () => {
    const help = connect(["audit", "verify", "--help"], url)
    expect((await help.exited(30_000)).code).toBe(0)
    expect(help.stdout()).toMatch(/Exit code 0 when intact, 3 when broken/)
    expect(help.stdout()).toMatch(/--independent/)
  })
})

describe("connect audit verify run again and again", () => {
  it("adds one AuditRead per window, the runs in between counted and carried by the first run after it", async () => {
    const own = await Effect.runPromise(Scope.extend(TestDatabase.makeTestDatabaseUrl, scope))
    const sql = <A extends object>(statement: string) =>
      run(Effect.flatMap(SqlClient.SqlClient, (client) => client.unsafe<A>(statement)), () => own)
    await sql(`select 1`)
    for (const args of [["audit", "verify"], ["audit", "verify"], ["hub", "verify-log"], ["audit", "verify", "--json"]]) {
      const verify = connect(args, own)
      expect(await verify.exited(60_000)).toEqual({ code: 0, signal: null })
    }
    const reads = () =>
      sql<{ runs: number | null }>(
        `select (data->>'runs')::int as runs from events where type = 'AuditRead' and data->>'kind' = 'verify' order by position`
      )
    expect(await reads()).toEqual([{ runs: null }])
    expect(await sql(`select actor, kind, pending from audit_read_windows`)).toEqual([{ actor: "admin", kind: "verify", pending: 3 }])
    // An hour later (the window moved back rather than waited for), the next run carries the three.
    await sql(`update audit_read_windows set started_at = started_at - interval '61 minutes'`)
    const later = connect(["audit", "verify"], own)
    expect(await later.exited(60_000)).toEqual({ code: 0, signal: null })
    expect(later.stdout()).toMatch(/^OK: 1 events, hash chain intact/m)
    expect(await reads()).toEqual([{ runs: null }, { runs: 4 }])
    expect(await sql(`select pending from audit_read_windows`)).toEqual([{ pending: 0 }])
  }, 120_000)
})
