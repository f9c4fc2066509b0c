/**
 * The Postgres event log's writer under faults: a COMMIT whose reply is lost (exactly once, callers told what really
 * happened), a database that stops answering or refuses for transient reasons (Unavailable, never a refusal), a
 * database whose default isolation is repeatable read (the writer pins its own), and a stalled database with a
 * bounded queue (appends past the bound fail at once).
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Either, Exit, Fiber, Layer, Redacted, Scope } from "effect"
import Pg from "pg"
import { type AppendOptions, EventLog } from "../../../core/EventLog.ts"
import { EventMeta, WorkspaceCreated } from "../../../core/Events.ts"
import { uuidv7 } from "../../../core/Ids.ts"
import type { Projection } from "../../../core/Projection.ts"
import { verify } from "../../../audit/Verify.ts"
import * as Migrations from "../../../hub/db/Migrations.ts"
import * as PgEventLog from "../../../hub/eventlog/PgEventLog.ts"
import { ProjectionSql } from "../../../core/ProjectionSql.ts"
import * as StreamHeads from "../../../hub/readmodels/StreamHeads.ts"
import * as TcpProxy from "../../support/TcpProxy.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"

const meta = new EventMeta({ actor: { kind: "system" } })
const opts = (expectedVersion: AppendOptions["expectedVersion"], ids?: ReadonlyArray<string>): AppendOptions => ({
  expectedVersion,
  workspaceId: null,
  meta,
  ...(ids ? { ids } : {})
})
const created = (name: string) => new WorkspaceCreated({ workspaceId: uuidv7() as never, name })

const pgLayer = (url: string) =>
  PgClient.layer({ url: Redacted.make(url), maxConnections: 4, connectTimeout: "2 seconds" })

const logOn = (url: string, options: PgEventLog.PgEventLogOptions = { inline: [StreamHeads.projection] }) =>
  PgEventLog.layer(options).pipe(Layer.provideMerge(Layer.effectDiscard(Migrations.run)), Layer.provideMerge(pgLayer(url)))

/** A fresh database reached through a proxy: the database's own URL and the proxied one. */
const proxiedDatabase = Effect.gen(function* () {
  const direct = yield* TestDatabase.makeTestDatabaseUrl
  const url = new URL(direct)
  const proxy = yield* TcpProxy.start(url.hostname, Number(url.port || 5432))
  url.hostname = "127.0.0.1"
  url.port = String(proxy.port)
  return { direct, proxied: url.toString(), proxy }
})

/** A session of its own on `url`, closed with the scope. */
const session = (url: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const c = new Pg.Client({ connectionString: url })
      await c.connect()
      return c
    }),
    (c) => Effect.promise(() => c.end().catch(() => undefined))
  )

const names = (url: string) =>
  Effect.flatMap(session(url), (c) =>
    Effect.promise(() => c.query<{ name: string }>(`select data->>'name' as name from events order by position`))
  ).pipe(Effect.map((r) => r.rows.map((row) => row.name)), Effect.scoped)

describe("PgEventLog writer under faults", () => {
  it.scopedLive("a lost COMMIT reply: every event stored once, every caller told success with its stored positions", () =>
    Effect.gen(function* () {
      const { direct, proxied, proxy } = yield* proxiedDatabase
      const ctx = yield* Layer.build(logOn(proxied))
      const log = Context.get(ctx, EventLog)
      yield* log.append("warm", [created("warm")], opts("any"))
      proxy.cutAfterCommit()
      // Both requests are queued before the writer runs, so they share the batch whose reply is lost.
      const [a, b] = yield* Effect.all(
        [
          Effect.either(log.append("lost-a", [created("A")], opts("no_stream"))),
          Effect.either(log.append("lost-b", [created("B1"), created("B2")], opts("any")))
        ],
        { concurrency: "unbounded" }
      )
      expect(a).toEqual(Either.right({ firstPosition: expect.any(Number), lastPosition: expect.any(Number), version: 1 }))
      expect(Either.isRight(b)).toBe(true)
      expect((yield* names(direct)).sort()).toEqual(["A", "B1", "B2", "warm"])
      const stored = yield* log.readAll(0, 10)
      const at = (name: string) => stored.find((e) => (e.event as WorkspaceCreated).name === name)!.position
      expect(Either.getOrThrow(a).firstPosition).toBe(at("A"))
      expect(Either.getOrThrow(b)).toEqual({ firstPosition: at("B1"), lastPosition: at("B2"), version: 2 })
      expect(yield* verify().pipe(Effect.provide(ctx))).toMatchObject({ ok: true, count: 4 })
      // The writer goes on as usual afterwards.
      yield* log.append("lost-a", [created("after")], opts(1))
      expect(yield* verify().pipe(Effect.provide(ctx))).toMatchObject({ ok: true, count: 5 })
    })
  )

  it.scopedLive("a lost COMMIT reply on a batch of one: the no_stream caller is told success, not VersionConflict", () =>
    Effect.gen(function* () {
      const { direct, proxied, proxy } = yield* proxiedDatabase
      const ctx = yield* Layer.build(logOn(proxied))
      const log = Context.get(ctx, EventLog)
      yield* log.append("warm", [created("warm")], opts("any"))
      proxy.cutAfterCommit()
      const result = yield* Effect.either(log.append("single", [created("only")], opts("no_stream")))
      expect(result).toEqual(Either.right({ firstPosition: 2, lastPosition: 2, version: 1 }))
      expect(yield* names(direct)).toEqual(["warm", "only"])
      expect(yield* verify().pipe(Effect.provide(ctx))).toMatchObject({ ok: true, count: 2 })
    })
  )

  it.scopedLive("an outcome that stays unknown is reported as such; the caller's retry with the same ids stores nothing twice", () =>
    Effect.gen(function* () {
      const { direct, proxied, proxy } = yield* proxiedDatabase
      const ctx = yield* Layer.build(logOn(proxied))
      const log = Context.get(ctx, EventLog)
      yield* log.append("warm", [created("warm")], opts("any"))
      // The reply is lost and the database then stays unreachable for longer than the writer's own attempts.
      proxy.cutAfterCommit({ thenCut: true })
      const ids = [uuidv7()]
      const lost = yield* Effect.flip(log.append("unknown", [created("u")], opts("no_stream", ids)))
      expect(lost).toMatchObject({ _tag: "EventLogError", reason: "Unavailable" })
      expect(lost.message).toContain("the outcome of this append is unknown")
      proxy.restore()
      const retried = yield* log.append("unknown", [created("u")], opts("no_stream", ids))
      expect(retried).toEqual({ firstPosition: 2, lastPosition: 2, version: 1 })
      expect(yield* names(direct)).toEqual(["warm", "u"])
      expect(yield* verify().pipe(Effect.provide(ctx))).toMatchObject({ ok: true, count: 2 })
    })
  )

  it.scopedLive("an append retried with its ids after an unknown outcome answers with what is stored, once", () =>
    Effect.gen(function* () {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      const ctx = yield* Layer.build(logOn(url))
      const log = Context.get(ctx, EventLog)
      const ids = [uuidv7(), uuidv7()]
      const first = yield* log.append("retried", [created("r1"), created("r2")], opts("no_stream", ids))
      yield* log.append("other", [created("between")], opts("any"))
      // The caller never heard back and tries again with the same ids: told what committed, nothing stored twice.
      const again = yield* Effect.either(log.append("retried", [created("r1"), created("r2")], opts("no_stream", ids)))
      expect(again).toEqual(Either.right(first))
      expect(yield* names(url)).toEqual(["r1", "r2", "between"])
      expect((yield* log.readAll(0, 10)).map((e) => e.id).slice(0, 2)).toEqual(ids)
    })
  )

  it.scopedLive("a database that stops answering fails appends as Unavailable within the timeout, and shutdown ends", () =>
    Effect.gen(function* () {
      const { proxied, proxy } = yield* proxiedDatabase
      const scope = yield* Scope.make()
      const ctx = yield* Layer.buildWithScope(
        logOn(proxied, { inline: [StreamHeads.projection], statementTimeout: "1 second" }),
        scope
      )
      const log = Context.get(ctx, EventLog)
      yield* log.append("warm", [created("warm")], opts("any"))
      proxy.stall()
      const started = Date.now()
      const error = yield* Effect.flip(log.append("hang", [created("hang")], opts("any"))).pipe(Effect.timeout("20 seconds"))
      expect(error).toMatchObject({ _tag: "EventLogError", reason: "Unavailable" })
      expect(Date.now() - started).toBeLessThan(15_000)
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      expect((yield* Fiber.join(closing).pipe(Effect.timeout("10 seconds"), Effect.option))._tag).toBe("Some")
    })
  )

  it.scopedLive("a transient refusal (statement timeout, lock timeout) is Unavailable, not Rejected", () =>
    Effect.gen(function* () {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      // An inline projection that waits on a row another session holds, or sleeps past the statement timeout.
      const waits: Projection<ProjectionSql> = {
        name: "waits",
        mode: "inline",
        apply: (events) =>
          Effect.forEach(events, (e) => {
            const name = (e.event as WorkspaceCreated).name
            return name === "locked"
              ? Effect.zipRight(
                ProjectionSql.pipe(Effect.flatMap((q) => q.execute(`select set_config('lock_timeout', '200ms', true)`))),
                ProjectionSql.pipe(Effect.flatMap((q) => q.execute(`update held set n = n + 1`)))
              )
              : name === "slow"
              ? ProjectionSql.pipe(Effect.flatMap((q) => q.execute(`select pg_sleep(3)`)))
              : Effect.void
          }, { discard: true }),
        reset: Effect.void
      }
      yield* Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const log = yield* EventLog
        yield* sql.unsafe(`create table held (n int)`)
        yield* sql.unsafe(`insert into held values (0)`)
        const holder = yield* session(url)
        yield* Effect.promise(() => holder.query(`begin; select * from held for update`))
        for (const name of ["locked", "slow"]) {
          const error = yield* Effect.flip(log.append(`transient-${name}`, [created(name)], opts("any")))
          expect(error).toMatchObject({ _tag: "EventLogError", reason: "Unavailable" })
        }
        yield* Effect.promise(() => holder.query(`rollback`))
        yield* log.append("transient-after", [created("after")], opts("any"))
        expect(yield* verify()).toMatchObject({ ok: true, count: 1 })
      }).pipe(Effect.provide(logOn(url, { inline: [waits], statementTimeout: "1 second" })))
    })
  )

  it.scopedLive("under a database default of repeatable read, two writers append 600 events at once without a failure", () =>
    Effect.gen(function* () {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      const name = new URL(url).pathname.slice(1)
      const admin = yield* session(url)
      yield* Effect.promise(() =>
        admin.query(`alter database "${name}" set default_transaction_isolation = 'repeatable read'`)
      )
      const a = yield* Layer.build(logOn(url))
      const b = yield* Layer.build(logOn(url))
      const appendMany = (ctx: typeof a, who: string) =>
        Effect.forEach(
          Array.from({ length: 300 }, (_, i) => i),
          (i) =>
            Effect.either(Context.get(ctx, EventLog).append(`rr-${i % 5}`, [created(`${who}-${i}`)], opts("any"))),
          { concurrency: 8 }
        )
      const results = (yield* Effect.all([appendMany(a, "a"), appendMany(b, "b")], { concurrency: 2 })).flat()
      expect(results.filter(Either.isLeft).map((r) => r.left.message)).toEqual([])
      expect(yield* verify().pipe(Effect.provide(a))).toMatchObject({ ok: true, count: 600 })
    })
  )

  it.scopedLive("past its queue bound, an append fails at once as unavailable; the queued ones commit later", () =>
    Effect.gen(function* () {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      const ctx = yield* Layer.build(logOn(url, { inline: [StreamHeads.projection], maxQueued: 20 }))
      const log = Context.get(ctx, EventLog)
      yield* log.append("warm", [created("warm")], opts("any"))
      // Another session holds the append lock: the writer's next transaction waits for it.
      const holder = yield* session(url)
      yield* Effect.promise(() => holder.query(`select pg_advisory_lock($1)`, [PgEventLog.APPEND_LOCK_KEY]))
      const first = yield* Effect.fork(Effect.either(log.append("held", [created("first")], opts("any"))))
      yield* Effect.sleep("200 millis")
      const started = Date.now()
      const appends = yield* Effect.forEach(
        Array.from({ length: 50 }, (_, i) => i),
        (i) => Effect.fork(Effect.either(log.append("held", [created(`q${i}`)], opts("any")))),
        { concurrency: "unbounded" }
      )
      const refused = yield* Effect.forEach(appends.slice(20), Fiber.join).pipe(Effect.timeout("1 second"))
      expect(Date.now() - started).toBeLessThan(1_000)
      for (const r of refused) {
        expect(Either.flip(r)).toEqual(Either.right(expect.objectContaining({
          _tag: "EventLogError",
          reason: "Unavailable",
          message: "audit log unavailable: writer queue full"
        })))
      }
      yield* Effect.sleep("2 seconds")
      yield* Effect.promise(() => holder.query(`select pg_advisory_unlock($1)`, [PgEventLog.APPEND_LOCK_KEY]))
      const accepted = yield* Effect.forEach([first, ...appends.slice(0, 20)], Fiber.join)
      expect(accepted.every(Either.isRight)).toBe(true)
      expect(yield* verify().pipe(Effect.provide(ctx))).toMatchObject({ ok: true, count: 22 })
    })
  )
})
