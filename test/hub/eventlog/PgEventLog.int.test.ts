/**
 * The Postgres event log against a real Postgres: version checks, group commit under concurrency with conflicts and
 * rollbacks, gap-free positions, subscriptions, two writers on one database, append-only triggers, chain verification,
 * decoding on read, and projection rebuilds.
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import Pg from "pg"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Either, Exit, Fiber, FiberRef, HashSet, Layer, Logger, Random, Redacted, Ref, Scope, Stream } from "effect"
import { type AppendOptions, EventLog, type StoredEvent } from "../../../core/EventLog.ts"
import { EventMeta, WorkspaceCreated } from "../../../core/Events.ts"
import { jsonbText, NotCanonical } from "../../../core/HashChain.ts"
import { uuidv7 } from "../../../core/Ids.ts"
import type { Projection } from "../../../core/Projection.ts"
import { verify } from "../../../audit/Verify.ts"
import * as Migrations from "../../../hub/db/Migrations.ts"
import * as PgEventLog from "../../../hub/eventlog/PgEventLog.ts"
import * as ProjectionRunner from "../../../hub/eventlog/ProjectionRunner.ts"
import { ProjectionSql } from "../../../core/ProjectionSql.ts"
import * as StreamHeads from "../../../hub/readmodels/StreamHeads.ts"
import { appendForeign } from "../../support/ForeignEvent.ts"
import * as TcpProxy from "../../support/TcpProxy.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"

const meta = new EventMeta({ actor: { kind: "system" } })
const opts = (expectedVersion: AppendOptions["expectedVersion"]): AppendOptions => ({
  expectedVersion,
  workspaceId: null,
  meta
})
const created = (name: string) => new WorkspaceCreated({ workspaceId: uuidv7() as never, name })

/** An inline projection that fails on any workspace named "rollback…", to make append transactions roll back. */
const saboteur: Projection<ProjectionSql> = {
  name: "saboteur",
  mode: "inline",
  apply: (events) =>
    events.some((e) => e.event._tag === "WorkspaceCreated" && e.event.name.startsWith("rollback"))
      ? Effect.fail(new Error("sabotaged"))
      : Effect.void,
  reset: Effect.void
}

/** An async projection counting events per stored type (table `type_counts`, created by the test). */
const typeCounts: Projection<ProjectionSql> = {
  name: "type_counts",
  mode: "async",
  apply: (events) =>
    Effect.flatMap(ProjectionSql, (q) =>
      q.execute(
        `insert into type_counts select t, count(*) from unnest($1::text[]) t group by t
         on conflict (type) do update set n = type_counts.n + excluded.n`,
        [events.map((e) => e.type)]
      )
    ),
  reset: Effect.flatMap(ProjectionSql, (q) => q.execute(`delete from type_counts`))
}

const pgLayer = (url: string) => PgClient.layer({ url: Redacted.make(url), maxConnections: 8, connectTimeout: "3 seconds" })

/** A fresh database with the schema, and an event log on its own pool. */
const logOn = (url: string, options: PgEventLog.PgEventLogOptions = {}) =>
  PgEventLog.layer(options).pipe(Layer.provideMerge(Layer.effectDiscard(Migrations.run)), Layer.provideMerge(pgLayer(url)))

const withLog = <A, E>(
  body: (url: string) => Effect.Effect<A, E, EventLog | SqlClient.SqlClient | PgClient.PgClient>,
  options: PgEventLog.PgEventLogOptions = { inline: [StreamHeads.projection] }
) =>
  Effect.gen(function* () {
    const url = yield* TestDatabase.makeTestDatabaseUrl
    return yield* body(url).pipe(Effect.provide(logOn(url, options)))
  })

describe("PgEventLog", () => {
  it.scopedLive("jsonbText renders exactly what Postgres renders for jsonb, so verify can hash stored text", () =>
    withLog(() =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const values: Array<unknown> = [
          { b: 1, a: 2, aa: [1, "x", null, true, false, { z: {}, y: [] }], "": 0 },
          { "é": "ü", e: "\u0001\b\f\n\r\t\"\\/\u007f", "😀": "😀 astral", "\u00ff": 1, z: -0.5, y: 12345678901234 },
          { nested: { deeper: { deepest: [[], [{}], 0.1, -3] } }, ["k".repeat(40)]: "long" },
          "plain",
          [3, 2, 1],
          0.30000000000000004
        ]
        for (const value of values) {
          const text = jsonbText(value)
          const [row] = yield* sql.unsafe<{ t: string }>(`select ($1::jsonb)::text as t`, [text])
          expect(row!.t).toBe(text)
          expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(value)))
        }
        for (const bad of [1e21, 1e-7, Number.NaN, "nul\u0000"]) expect(() => jsonbText({ bad })).toThrow(NotCanonical)
      })
    )
  )

  it.scopedLive("appends, reads back in order, and checks expected versions", () =>
    withLog(() =>
      Effect.gen(function* () {
        const log = yield* EventLog
        const a = yield* log.append("s-a", [created("one"), created("two")], opts("no_stream"))
        expect(a).toEqual({ firstPosition: 1, lastPosition: 2, version: 2 })
        const again = yield* Effect.either(log.append("s-a", [created("three")], opts("no_stream")))
        expect(Either.isLeft(again) && again.left._tag === "VersionConflict" && again.left.actual).toBe(2)
        const stale = yield* Effect.either(log.append("s-a", [created("three")], opts(1)))
        expect(Either.isLeft(stale) && stale.left.message).toContain("is at version 2, expected 1")
        const b = yield* log.append("s-a", [created("three")], opts(2))
        expect(b).toEqual({ firstPosition: 3, lastPosition: 3, version: 3 })
        yield* log.append("s-b", [created("four")], opts("any"))
        const all = yield* log.readAll(0, 100)
        expect(all.map((e) => [e.position, e.stream, e.version])).toEqual([
          [1, "s-a", 1],
          [2, "s-a", 2],
          [3, "s-a", 3],
          [4, "s-b", 1]
        ])
        expect(all.map((e) => (e.event as WorkspaceCreated).name)).toEqual(["one", "two", "three", "four"])
        expect((yield* log.readStream("s-a", 1)).map((e) => e.version)).toEqual([2, 3])
        expect((yield* log.head).position).toBe(4)
        const result = yield* verify()
        expect(result).toMatchObject({ ok: true, count: 4 })
      })
    )
  )

  it.scopedLive("32 fibers x 200 appends with conflicts and rollbacks: exactly-once, gap-free, seen in order by subscribe", () =>
    withLog(
      () =>
        Effect.gen(function* () {
          const log = yield* EventLog
          const seen = yield* Ref.make<Array<StoredEvent>>([])
          const reader = yield* log.subscribe(0).pipe(
            Stream.runForEach((e) => Ref.update(seen, (xs) => (xs.push(e), xs))),
            Effect.fork
          )
          const streams = Array.from({ length: 8 }, (_, i) => `conc-${i}`)
          const succeeded: Array<{ tag: string; position: number }> = []
          const failed: Array<string> = []
          yield* Effect.forEach(
            Array.from({ length: 32 }, (_, f) => f),
            (f) =>
              Effect.gen(function* () {
                // What this fiber believes each stream's version is; often stale on purpose.
                const known = new Map<string, number>()
                for (let i = 0; i < 200; i++) {
                  const stream = streams[yield* Random.nextIntBetween(0, streams.length)]!
                  const roll = yield* Random.nextIntBetween(0, 100)
                  const expected: AppendOptions["expectedVersion"] =
                    roll < 40 ? "any" : roll < 90 ? (known.get(stream) ?? 0) || "no_stream" : "no_stream"
                  const rollback = roll % 37 === 0 // about 3% of appends roll back
                  const tag = `${rollback ? "rollback" : "ok"}-${f}-${i}`
                  const result = yield* Effect.either(log.append(stream, [created(tag)], opts(expected)))
                  if (Either.isRight(result)) {
                    succeeded.push({ tag, position: result.right.lastPosition })
                    known.set(stream, result.right.version)
                  } else {
                    failed.push(tag)
                    if (result.left._tag === "VersionConflict") known.set(stream, result.left.actual)
                    else expect(result.left.reason).toBe("Projection")
                  }
                }
              }),
            { concurrency: "unbounded", discard: true }
          )
          expect(succeeded.length + failed.length).toBe(6400)
          expect(failed.some((t) => t.startsWith("rollback"))).toBe(true)
          expect(failed.some((t) => t.startsWith("ok"))).toBe(true) // some version conflicts happened
          expect(succeeded.some((s) => s.tag.startsWith("rollback"))).toBe(false)

          const all = yield* log.readAll(0, 100_000)
          const n = succeeded.length
          expect(all.map((e) => e.position)).toEqual(Array.from({ length: n }, (_, i) => i + 1))
          const tags = all.map((e) => (e.event as WorkspaceCreated).name)
          expect(new Set(tags).size).toBe(n)
          expect(new Set(tags)).toEqual(new Set(succeeded.map((s) => s.tag)))
          for (const s of succeeded) expect(tags[s.position - 1]).toBe(s.tag)
          // Versions per stream are 1..k without gaps, in position order.
          for (const stream of streams) {
            const versions = all.filter((e) => e.stream === stream).map((e) => e.version)
            expect(versions).toEqual(Array.from({ length: versions.length }, (_, i) => i + 1))
          }

          // The subscriber receives exactly the committed events, in position order, and nothing else.
          const deadline = Date.now() + 10_000
          while ((yield* Ref.get(seen)).length < n && Date.now() < deadline) yield* Effect.sleep("20 millis")
          yield* Effect.sleep("100 millis")
          yield* Fiber.interrupt(reader)
          const got = yield* Ref.get(seen)
          expect(got.map((e) => e.id)).toEqual(all.map((e) => e.id))
          expect(yield* verify()).toMatchObject({ ok: true, count: n })
        }),
      { inline: [StreamHeads.projection, saboteur], maxBatch: 64 }
    )
  )

  it.scopedLive("two pools with their own writers append at once and keep one valid chain", () =>
    Effect.gen(function* () {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      const a = yield* Layer.build(logOn(url))
      const b = yield* Layer.build(logOn(url))
      const appendMany = (ctx: typeof a, who: string) =>
        Effect.forEach(
          Array.from({ length: 400 }, (_, i) => i),
          (i) =>
            Effect.flatMap(EventLog, (log) => log.append(`two-${i % 5}`, [created(`${who}-${i}`)], opts("any"))).pipe(
              Effect.provide(ctx)
            ),
          { concurrency: 16, discard: true }
        )
      yield* Effect.all([appendMany(a, "a"), appendMany(b, "b")], { concurrency: 2 })
      const result = yield* verify().pipe(Effect.provide(a))
      expect(result).toMatchObject({ ok: true, count: 800 })
      const all = yield* Effect.flatMap(EventLog, (log) => log.readAll(0, 1000)).pipe(Effect.provide(b))
      expect(all.map((e) => e.position)).toEqual(Array.from({ length: 800 }, (_, i) => i + 1))
    })
  )

  it.scopedLive("a subscriber on one pool wakes on another pool's commit through NOTIFY, not the poll", () =>
    Effect.gen(function* () {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      const reader = yield* Layer.build(logOn(url, { pollInterval: 60_000 }))
      const writer = yield* Layer.build(logOn(url))
      const first = yield* Effect.flatMap(EventLog, (log) => log.subscribe(0).pipe(Stream.take(1), Stream.runCollect)).pipe(
        Effect.provide(reader),
        Effect.fork
      )
      // LISTEN has no "subscribed" signal; give it a moment, then append from the other pool.
      yield* Effect.sleep("300 millis")
      yield* Effect.flatMap(EventLog, (log) => log.append("notify", [created("hello")], opts("any"))).pipe(
        Effect.provide(writer)
      )
      const got = yield* Fiber.join(first).pipe(Effect.timeout("5 seconds"))
      expect([...got].map((e) => (e.event as WorkspaceCreated).name)).toEqual(["hello"])
    })
  )

  it.scopedLive("a burst of commits is announced at most once per pace, and its last head soon after it ends", () =>
    Effect.gen(function* () {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      const writer = yield* Layer.build(logOn(url, { notifyPace: "50 millis" }))
      // Another process's view: a plain LISTEN, counting what it is told.
      const payloads: Array<number> = []
      const listener = new Pg.Client({ connectionString: url })
      yield* Effect.acquireRelease(
        Effect.promise(async () => {
          await listener.connect()
          listener.on("notification", (n) => payloads.push(Number(n.payload)))
          await listener.query(`listen ${PgEventLog.NOTIFY_CHANNEL}`)
        }),
        () => Effect.promise(() => listener.end())
      )
      const started = performance.now()
      let head = 0
      for (let i = 0; i < 200; i++) {
        const result = yield* Effect.flatMap(EventLog, (log) => log.append("burst", [created(`b${i}`)], opts(i))).pipe(
          Effect.provide(writer)
        )
        head = result.lastPosition
      }
      const elapsed = performance.now() - started
      // The owed announcement comes once the writer has been idle for a pace.
      for (let waited = 0; !payloads.includes(head) && waited < 3000; waited += 20) yield* Effect.sleep("20 millis")
      expect(payloads).toContain(head)
      expect(payloads.length).toBeGreaterThanOrEqual(2)
      expect(payloads.length).toBeLessThanOrEqual(Math.ceil(elapsed / 50) + 2)
    })
  )

  it.scopedLive("without any notification, a subscriber still finds new events by polling", () =>
    withLog(
      () =>
        Effect.gen(function* () {
          const log = yield* EventLog
          const sql = yield* SqlClient.SqlClient
          const first = yield* log.subscribe(0).pipe(Stream.take(1), Stream.runCollect, Effect.fork)
          yield* Effect.sleep("300 millis")
          // Written behind the log's back (as another hub version might), so neither NOTIFY nor the in-process
          // signal fires: only the poll can see it.
          yield* sql.unsafe(
            `insert into events (position, id, stream, version, type, data, meta, recorded_at, prev_hash, hash)
             select 1, $1, 'poll', 1, 'WorkspaceCreated', d, m, t, $3,
                    connect_event_hash($3, 1, $1, 'poll', 1, null, 'WorkspaceCreated', d, m, t)
               from (select $2::jsonb as d, '{"actor": {"kind": "system"}}'::jsonb as m, now() as t) v`,
            [uuidv7(), JSON.stringify({ workspaceId: uuidv7(), name: "polled" }), Buffer.alloc(32)]
          )
          const got = yield* Fiber.join(first).pipe(Effect.timeout("5 seconds"))
          expect([...got].map((e) => (e.event as WorkspaceCreated).name)).toEqual(["polled"])
        }),
      { pollInterval: 200 }
    )
  )

  it.scopedLive("UPDATE, DELETE and TRUNCATE of events fail through the hub's connection", () =>
    withLog(() =>
      Effect.gen(function* () {
        const log = yield* EventLog
        const sql = yield* SqlClient.SqlClient
        yield* log.append("ao", [created("keep")], opts("any"))
        for (const statement of [
          `update events set type = 'X'`,
          `delete from events`,
          `truncate events`,
          `truncate events cascade`
        ]) {
          const result = yield* Effect.either(sql.unsafe(statement))
          expect(Either.isLeft(result) && String((result.left.cause as Error)?.message)).toContain("append-only")
        }
        expect((yield* log.readAll(0, 10)).length).toBe(1)
      })
    )
  )

  it.scopedLive("verify, in the database and in this process, names the first altered, unlinked or missing position", () =>
    withLog(() =>
      Effect.gen(function* () {
        const log = yield* EventLog
        const sql = yield* SqlClient.SqlClient
        // Stream names that JSON-escape in every way, so the database's canonical text must equal this process's.
        const streams = ["plain", `q"uo\\te`, "tab\tnl\n", "ünï😀", "ctl\u0001\u001f", "sep\u2028del\u007f"]
        const workspaceId = uuidv7()
        for (let i = 0; i < 25; i++) {
          yield* log.append(streams[i % streams.length]!, [created(`e${i} "quoted" \\ ü`)], {
            ...opts("any"),
            workspaceId: i % 2 === 0 ? null : (workspaceId as never)
          })
        }
        const both = (expected: Record<string, unknown>) =>
          Effect.gen(function* () {
            expect(yield* verify({ pageSize: 3 })).toMatchObject(expected)
            expect(yield* verify({ pageSize: 3, independent: true })).toMatchObject(expected)
            expect(yield* verify()).toMatchObject(expected)
          })
        yield* both({ ok: true, count: 25 })
        // As a superuser would: switch the trigger off, rewrite history, switch it back on.
        const tamper = (statement: string) =>
          sql.unsafe(`alter table events disable trigger events_no_update_delete;
                      ${statement};
                      alter table events enable trigger events_no_update_delete`)
        yield* tamper(`update events set data = jsonb_set(data, '{name}', '"forged"') where position = 17`)
        yield* both({ ok: false, position: 17, reason: "hash_mismatch", count: 16 })
        yield* tamper(`update events set prev_hash = hash where position = 12`)
        yield* both({ ok: false, position: 12, reason: "broken_link", count: 11 })
        // Missing inside a page, then missing as the first row of a page (pages are 1-3, 4-6, ...).
        yield* tamper(`delete from events where position = 8`)
        yield* both({ ok: false, position: 8, reason: "gap" })
        yield* tamper(`delete from events where position = 4`)
        yield* both({ ok: false, position: 4, reason: "gap" })
      })
    )
  )

  it.scopedLive("invalid data, or an unknown type in a stream a decider reads, is a clear decode error naming the position", () =>
    withLog(() =>
      Effect.gen(function* () {
        const log = yield* EventLog
        const sql = yield* SqlClient.SqlClient
        yield* log.append("d", [created("fine")], opts("any"))
        yield* sql.unsafe(
          `insert into events (position, id, stream, version, type, data, meta, recorded_at, prev_hash, hash)
           select 2, $1, 'd', 2, 'SomethingHappened', d, m, t, p,
                  connect_event_hash(p, 2, $1, 'd', 2, null, 'SomethingHappened', d, m, t)
             from (select '{}'::jsonb as d, '{"actor":{"kind":"system"}}'::jsonb as m, now() as t,
                          (select hash from events where position = 1) as p) v`,
          [uuidv7()]
        )
        const result = yield* Effect.either(log.readStream("d"))
        expect(Either.isLeft(result) && result.left.reason).toBe("Decode")
        expect(Either.isLeft(result) && result.left.message).toMatch(/position 2 \(SomethingHappened\).*SomethingHappened/)
        // A known type whose payload does not decode fails every read.
        yield* appendForeign("e", "WorkspaceCreated", { name: 42 })
        const bad = yield* Effect.either(log.readAll(0, 10))
        expect(Either.isLeft(bad) && bad.left.reason).toBe("Decode")
        expect(Either.isLeft(bad) && bad.left.message).toMatch(/position 3 \(WorkspaceCreated\)/)
        // The chain still reads (verify needs no decoding), so an investigator can see what is there.
        expect((yield* log.readLinks(0, 10)).map((l) => l.canonical.split(",")[5])).toEqual([
          `"WorkspaceCreated"`,
          `"SomethingHappened"`,
          `"WorkspaceCreated"`
        ])
      })
    )
  )

  it.scopedLive("a projection write Postgres refuses fails its own request; the batch around it commits", () =>
    Effect.gen(function* () {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      const unique: Projection<ProjectionSql> = {
        name: "unique_names",
        mode: "inline",
        apply: (events) =>
          Effect.forEach(
            events,
            (e) =>
              e.event._tag === "WorkspaceCreated"
                ? Effect.flatMap(ProjectionSql, (q) => q.execute(`insert into unique_names (name) values ($1)`, [
                  (e.event as WorkspaceCreated).name
                ]))
                : Effect.void,
            { discard: true }
          ),
        reset: Effect.void
      }
      yield* Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const log = yield* EventLog
        yield* sql.unsafe(`create table unique_names (name text primary key)`)
        const results = yield* Effect.forEach(
          ["dup", "ok 'quoted' \\ ü", "dup", "also ok"],
          (name, i) => Effect.either(log.append(`uniq-${i}`, [created(name)], opts("any"))),
          { concurrency: "unbounded" }
        )
        expect(results.filter(Either.isRight)).toHaveLength(3)
        const failed = results.filter(Either.isLeft).map((r) => r.left)
        expect(failed).toHaveLength(1)
        // Projection writes go to Postgres with the commit, so the refusal is the request's, reported as Postgres's.
        expect(failed[0]).toMatchObject({ _tag: "EventLogError", reason: "Rejected" })
        expect(failed[0]!.message).toMatch(/append refused by Postgres: duplicate key/)
        expect((yield* sql.unsafe<{ name: string }>(`select name from unique_names order by name`)).map((r) => r.name))
          .toEqual(["also ok", "dup", "ok 'quoted' \\ ü"])
        expect((yield* log.readAll(0, 10)).map((e) => (e.event as WorkspaceCreated).name).sort())
          .toEqual(["also ok", "dup", "ok 'quoted' \\ ü"])
        expect(yield* verify()).toMatchObject({ ok: true, count: 3 })
        // Alone in its batch, a refused request is still the request's fault (Rejected), not an outage.
        const alone = yield* Effect.flip(log.append("uniq-alone", [created("dup")], opts("any")))
        expect(alone).toMatchObject({ _tag: "EventLogError", reason: "Rejected" })
        expect(alone.message).toMatch(/duplicate key/)
        expect(yield* verify()).toMatchObject({ ok: true, count: 3 })
        // The writer's connection is still good afterwards.
        yield* log.append("uniq-after", [created("after")], opts("any"))
        expect(yield* verify()).toMatchObject({ ok: true, count: 4 })
      }).pipe(Effect.provide(logOn(url, { inline: [StreamHeads.projection, unique] })))
    })
  )

  it.scopedLive("closing the log answers every append in flight or queued: committed, or failed as closed", () =>
    Effect.gen(function* () {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      const scope = yield* Scope.make()
      // A slow inline projection keeps the first batch in the database while the log closes.
      const slow: Projection<ProjectionSql> = { name: "slow", mode: "inline", apply: () => Effect.sleep("300 millis"), reset: Effect.void }
      const ctx = yield* Layer.buildWithScope(logOn(url, { inline: [slow], maxBatch: 50 }), scope)
      const log = Context.get(ctx, EventLog)
      yield* log.append("warm", [created("warm")], opts("any"))
      const appends = yield* Effect.forEach(
        Array.from({ length: 200 }, (_, i) => i),
        (i) => Effect.fork(Effect.either(log.append(`closing-${i % 7}`, [created(`c${i}`)], opts("any")))),
        { concurrency: "unbounded" }
      )
      yield* Effect.sleep("100 millis")
      yield* Scope.close(scope, Exit.void)
      const results = yield* Effect.forEach(appends, Fiber.join).pipe(Effect.timeout("10 seconds"))
      const failures = results.filter(Either.isLeft).map((r) => r.left)
      for (const f of failures) expect(f).toMatchObject({ _tag: "EventLogError", reason: "Unavailable", message: "event log closed" })
      expect(results.filter(Either.isRight).length + failures.length).toBe(200)
      // After a fresh start the log holds exactly the appends that were answered as committed, and still verifies.
      const committed = results.filter(Either.isRight).length
      // The batch in the database when the log closed committed and was answered so; the queued ones failed.
      expect([committed, failures.length]).toEqual([50, 150])
      yield* Effect.gen(function* () {
        expect((yield* (yield* EventLog).readAll(0, 1000)).length).toBe(committed + 1)
        expect(yield* verify()).toMatchObject({ ok: true, count: committed + 1 })
      }).pipe(Effect.provide(logOn(url)))
    })
  )

  it.scopedLive("a request Postgres cannot store fails alone; a batch around it commits", () =>
    withLog(() =>
      Effect.gen(function* () {
        const log = yield* EventLog
        const results = yield* Effect.forEach(
          ["a", "b\u0000c", "d"],
          (name) => Effect.either(log.append("nul", [created(name)], opts("any"))),
          { concurrency: "unbounded" }
        )
        expect(results.map(Either.isRight)).toEqual([true, false, true])
        expect((yield* log.readAll(0, 10)).length).toBe(2)
        // A stream name Postgres text cannot hold is refused before it reaches a batch.
        const nulStream = yield* Effect.flip(log.append("nul\u0000stream", [created("e")], opts("any")))
        expect(nulStream).toMatchObject({ _tag: "EventLogError", reason: "Rejected", message: "a stream name cannot contain U+0000" })
        expect((yield* log.readAll(0, 10)).length).toBe(2)
      })
    )
  )

  it.scopedLive("while Postgres is unreachable appends fail promptly with Unavailable; afterwards the log resumes", () =>
    Effect.gen(function* () {
      const url = new URL(yield* TestDatabase.makeTestDatabaseUrl)
      const proxy = yield* TcpProxy.start(url.hostname, Number(url.port || 5432))
      url.hostname = "127.0.0.1"
      url.port = String(proxy.port)
      const ctx = yield* Layer.build(logOn(url.toString()))
      const append = (name: string) =>
        Effect.flatMap(EventLog, (log) => log.append("outage", [created(name)], opts("any"))).pipe(
          Effect.provide(ctx),
          Effect.either
        )
      expect(Either.isRight(yield* append("before"))).toBe(true)
      proxy.cut()
      const started = Date.now()
      const during = yield* append("during")
      expect(Either.isLeft(during) && during.left._tag === "EventLogError" && during.left.reason).toBe("Unavailable")
      expect(Date.now() - started).toBeLessThan(15_000)
      proxy.restore()
      let after = yield* append("after")
      for (let i = 0; i < 50 && Either.isLeft(after); i++) {
        yield* Effect.sleep("100 millis")
        after = yield* append("after")
      }
      expect(Either.isRight(after)).toBe(true)
      const all = yield* Effect.flatMap(EventLog, (log) => log.readAll(0, 10)).pipe(Effect.provide(ctx))
      expect(all.map((e) => (e.event as WorkspaceCreated).name)).toEqual(["before", "after"])
      expect(yield* verify().pipe(Effect.provide(ctx))).toMatchObject({ ok: true, count: 2 })
    })
  )

  it.scopedLive("a rebuilt read model equals the live one, and an async projection catches up exactly once", () =>
    withLog(() =>
      Effect.gen(function* () {
        const log = yield* EventLog
        const sql = yield* SqlClient.SqlClient
        yield* Effect.forEach(
          Array.from({ length: 500 }, (_, i) => i),
          (i) => log.append(`rb-${i % 17}`, [created(`r${i}`), created(`s${i}`)], opts("any")),
          { concurrency: 32, discard: true }
        )
        const snapshot = () =>
          sql.unsafe(`select stream, workspace_id, version, last_position, last_type, event_count, updated_at
                      from stream_heads order by stream`)
        const live = yield* snapshot()
        expect(live.length).toBe(17)
        const replayed = yield* ProjectionRunner.rebuild(StreamHeads.projection, { pageSize: 128 })
        expect(replayed).toBe(1000)
        expect(yield* snapshot()).toEqual(live)
        expect(yield* ProjectionRunner.checkpoint("stream_heads")).toBe(1000)

        // An async projection counting events per type, following from its checkpoint.
        yield* sql.unsafe(`create table type_counts (type text primary key, n int not null)`)
        const counts = typeCounts
        const follower = yield* Effect.fork(ProjectionRunner.follow(counts, 100))
        yield* log.append("rb-late", [created("late")], opts("any"))
        const deadline = Date.now() + 10_000
        while ((yield* ProjectionRunner.checkpoint("type_counts")) < 1001 && Date.now() < deadline) {
          yield* Effect.sleep("20 millis")
        }
        yield* Fiber.interrupt(follower)
        expect(yield* sql.unsafe(`select type, n from type_counts`)).toEqual([{ type: "WorkspaceCreated", n: 1001 }])
        // Restarting from the checkpoint applies nothing twice.
        const again = yield* Effect.fork(ProjectionRunner.follow(counts, 100))
        yield* Effect.sleep("300 millis")
        yield* Fiber.interrupt(again)
        expect(yield* sql.unsafe(`select type, n from type_counts`)).toEqual([{ type: "WorkspaceCreated", n: 1001 }])
      })
    )
  )

  it.scopedLive("a subscriber passes on an event type this build does not know as UnknownEvent, warns once per type, and goes on", () =>
    withLog(() => {
      const warnings: Array<string> = []
      const logger = Logger.make(({ logLevel, message }) => {
        if (logLevel.label === "WARN") warnings.push(String(Array.isArray(message) ? message[0] : message))
      })
      return Effect.gen(function* () {
        const log = yield* EventLog
        const sql = yield* SqlClient.SqlClient
        yield* log.append("known-1", [created("before")], opts("any"))
        yield* appendForeign("future-1", "ServiceTeleported", { to: "mars" })
        yield* appendForeign("future-2", "ServiceTeleported", { to: "venus" })
        yield* log.append("known-2", [created("after")], opts("any"))
        expect(yield* verify()).toMatchObject({ ok: true, count: 4 })

        const seen = yield* log.subscribe(0).pipe(Stream.take(4), Stream.runCollect, Effect.timeout("10 seconds"))
        const events = [...seen]
        expect(events.map((e) => [e.position, e.type, e.event._tag])).toEqual([
          [1, "WorkspaceCreated", "WorkspaceCreated"],
          [2, "ServiceTeleported", "UnknownEvent"],
          [3, "ServiceTeleported", "UnknownEvent"],
          [4, "WorkspaceCreated", "WorkspaceCreated"]
        ])
        // Kept whole: what an exporter copies raw.
        expect(events[1]!.event).toMatchObject({ type: "ServiceTeleported", data: { to: "mars" } })
        expect(JSON.parse(events[2]!.dataJson)).toEqual({ to: "venus" })
        expect(warnings.filter((w) => w.includes("ServiceTeleported"))).toHaveLength(1)
        // A decider must not fold a history it cannot read.
        const stream = yield* Effect.either(log.readStream("future-1"))
        expect(Either.isLeft(stream) && stream.left._tag === "EventLogError" && stream.left.reason).toBe("Decode")

        // An async projection follows past them.
        yield* sql.unsafe(`create table type_counts (type text primary key, n int not null)`)
        const follower = yield* Effect.fork(ProjectionRunner.follow(typeCounts, 100))
        const deadline = Date.now() + 10_000
        while ((yield* ProjectionRunner.checkpoint("type_counts")) < 4 && Date.now() < deadline) yield* Effect.sleep("20 millis")
        yield* Fiber.interrupt(follower)
        expect(yield* sql.unsafe(`select type, n from type_counts order by type`)).toEqual([
          { type: "ServiceTeleported", n: 2 },
          { type: "WorkspaceCreated", n: 2 }
        ])
      }).pipe(Effect.locallyWith(FiberRef.currentLoggers, (ls) => HashSet.add(ls, logger)))
    })
  )
})
