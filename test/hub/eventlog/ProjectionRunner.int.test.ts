/**
 * Projections run safely beside a live hub: two followers of one async projection apply each event once (the
 * checkpoint moves by compare-and-set), a rebuild replays without holding the append lock and swaps complete tables in,
 * and only the owner role may rebuild, leaving tables the hub's role can still use.
 */
import * as Crypto from "node:crypto"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, Fiber, Layer } from "effect"
import Pg from "pg"
import { inject } from "vitest"
import { type AppendOptions, EventLog } from "../../../core/EventLog.ts"
import * as E from "../../../core/Events.ts"
import { AgentId, Streams, uuidv7, WorkspaceId } from "../../../core/Ids.ts"
import type { Projection } from "../../../core/Projection.ts"
import { sha256Hex } from "../../../core/Secrets.ts"
import * as Database from "../../../hub/db/Database.ts"
import * as Main from "../../../hub/Main.ts"
import * as Migrations from "../../../hub/db/Migrations.ts"
import * as PgEventLog from "../../../hub/eventlog/PgEventLog.ts"
import * as ProjectionRunner from "../../../hub/eventlog/ProjectionRunner.ts"
import { ProjectionSql } from "../../../core/ProjectionSql.ts"
import * as Agents from "../../../hub/readmodels/Agents.ts"
import * as Scoped from "../../../hub/db/Scoped.ts"
import * as StreamHeads from "../../../hub/readmodels/StreamHeads.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"

const meta = new E.EventMeta({ actor: { kind: "system" } })
const opts = (workspaceId: string | null = null): AppendOptions => ({ expectedVersion: "any", workspaceId, meta })
const created = (name: string) => new E.WorkspaceCreated({ workspaceId: WorkspaceId.make(uuidv7()), name })
const hash = (s: string) => E.Sha256Hex.make(sha256Hex(s))

/** The hub's event log (inline read models) on `url`, migrated by whoever `url` connects as. */
const hubOn = (url: string, migrate = true) =>
  PgEventLog.layer({ inline: Main.INLINE_PROJECTIONS }).pipe(
    Layer.provideMerge(migrate ? Layer.effectDiscard(Migrations.run) : Layer.empty),
    Layer.provideMerge(PgClient.layer(Database.pgClientConfig(url, { maxConnections: 6 })))
  )

/** Counts events per type (`type_counts`), with an optional pause before each batch to widen races. */
const typeCounts = (pause?: Effect.Effect<void>): Projection<ProjectionSql> => ({
  name: "type_counts",
  mode: "async",
  apply: (events) =>
    Effect.flatMap(ProjectionSql, (q) =>
      Effect.zipRight(
        pause ?? Effect.void,
        q.execute(
          `insert into type_counts select t, count(*) from unnest($1::text[]) t group by t
           on conflict (type) do update set n = type_counts.n + excluded.n`,
          [events.map((e) => e.type)]
        )
      )
    ),
  reset: Effect.flatMap(ProjectionSql, (q) => q.execute(`delete from type_counts`))
})

const adminQuery = (statement: string) =>
  Effect.promise(async () => {
    const client = new Pg.Client({ connectionString: inject("adminDatabaseUrl") })
    await client.connect()
    try {
      await client.query(statement)
    } finally {
      await client.end()
    }
  })

describe("ProjectionRunner", () => {
  it.scopedLive("two followers of one projection apply every event exactly once, and the checkpoint never goes back", () =>
    Effect.gen(function*() {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      const ctx = yield* Layer.build(hubOn(url))
      yield* Effect.gen(function*() {
        const log = yield* EventLog
        const sql = yield* SqlClient.SqlClient
        yield* sql.unsafe(`create table type_counts (type text primary key, n int not null)`)
        yield* Effect.forEach(Array.from({ length: 300 }, (_, i) => i), (i) => log.append(`f-${i % 7}`, [created(`w${i}`)], opts()), {
          concurrency: 16,
          discard: true
        })
        const counts = typeCounts(Effect.sleep("5 millis"))
        const followers = yield* Effect.forEach([1, 2, 3], () => Effect.fork(ProjectionRunner.follow(counts, 40)))
        const seen: Array<number> = []
        const deadline = Date.now() + 15_000
        while (Date.now() < deadline) {
          seen.push(yield* ProjectionRunner.checkpoint("type_counts"))
          if (seen[seen.length - 1] === 300) break
          yield* Effect.sleep("5 millis")
        }
        yield* log.append("f-late", [created("late")], opts())
        while ((yield* ProjectionRunner.checkpoint("type_counts")) < 301 && Date.now() < deadline) yield* Effect.sleep("10 millis")
        yield* Effect.sleep("200 millis")
        yield* Fiber.interruptAll(followers)
        expect(yield* sql.unsafe(`select type, n from type_counts`)).toEqual([{ type: "WorkspaceCreated", n: 301 }])
        expect(seen.every((p, i) => i === 0 || p >= seen[i - 1]!)).toBe(true)
        expect(yield* ProjectionRunner.checkpoint("type_counts")).toBe(301)
        // A runner whose checkpoint is stale moves nothing.
        expect(yield* ProjectionRunner.storeCheckpoint("type_counts", 200, 250)).toBe(false)
        expect(yield* ProjectionRunner.checkpoint("type_counts")).toBe(301)
      }).pipe(Effect.provide(ctx))
    }), { timeout: 60_000 })

  it.scopedLive("a rebuild replays without the append lock: appends go on meanwhile, readers see the whole live table, the tail is caught up", () =>
    Effect.gen(function*() {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      const ctx = yield* Layer.build(hubOn(url))
      yield* Effect.gen(function*() {
        const log = yield* EventLog
        const sql = yield* SqlClient.SqlClient
        yield* Effect.forEach(Array.from({ length: 200 }, (_, i) => i), (i) => log.append(`rb-${i % 13}`, [created(`r${i}`)], opts()), {
          concurrency: 16,
          discard: true
        })
        const snapshot = () =>
          sql.unsafe<{ stream: string }>(`select stream, workspace_id, version, last_position, last_type, event_count, updated_at
                      from stream_heads order by stream`)
        const before = yield* snapshot()
        const paused = yield* Deferred.make<void>()
        const go = yield* Deferred.make<void>()
        const rebuild = yield* Effect.fork(
          ProjectionRunner.rebuild(StreamHeads.projection, {
            pageSize: 50,
            onProgress: (position) =>
              position === 50 ? Effect.zipRight(Deferred.succeed(paused, undefined), Deferred.await(go)) : Effect.void
          })
        )
        yield* Deferred.await(paused)
        // Mid-replay: an append commits at once, and the live table is whole.
        const during = yield* Effect.either(Effect.timeout(log.append("rb-new", [created("during")], opts()), "3 seconds"))
        yield* Deferred.succeed(go, undefined)
        expect(Either.isRight(during)).toBe(true)
        const live = yield* snapshot()
        expect(live.length).toBe(before.length + 1)
        expect(live.filter((r) => r.stream !== "rb-new")).toEqual(before)
        expect(yield* Fiber.join(rebuild)).toBe(201)
        expect(yield* snapshot()).toEqual(live)
        expect(yield* ProjectionRunner.checkpoint("stream_heads")).toBe(201)
        // The inline projection writes into the swapped-in table.
        yield* log.append("rb-new", [created("after")], opts())
        const [row] = yield* sql.unsafe<{ version: number }>(`select version from stream_heads where stream = 'rb-new'`)
        expect(row!.version).toBe(2)
      }).pipe(Effect.provide(ctx))
    }), { timeout: 60_000 })

  it.scopedLive("the hub's role may not rebuild; rebuilt by the owner, agents keeps its policies, grants and owner", () =>
    Effect.gen(function*() {
      const role = `connect_t_hub_${Crypto.randomBytes(4).toString("hex")}`
      const password = Crypto.randomBytes(12).toString("hex")
      yield* Effect.acquireRelease(
        adminQuery(`create role ${role} login password '${password}'`),
        () => adminQuery(`drop role if exists ${role}`).pipe(Effect.ignore)
      )
      const ownerUrl = yield* TestDatabase.makeTestDatabaseUrl
      const owner = yield* Layer.build(hubOn(ownerUrl))
      yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(`grant connect_writer to ${role}`)).pipe(
        Effect.provide(owner)
      )
      const hubUrl = new URL(ownerUrl)
      hubUrl.username = role
      hubUrl.password = password
      const hub = yield* Layer.build(hubOn(hubUrl.toString(), false))

      const ws = WorkspaceId.make(uuidv7())
      const agentId = AgentId.make(uuidv7())
      yield* Effect.gen(function*() {
        const log = yield* EventLog
        yield* log.append(Streams.workspace(ws), [new E.WorkspaceCreated({ workspaceId: ws, name: "ws" })], opts(ws))
        yield* log.append(Streams.agent(agentId), [
          new E.AgentProvisioned({ agentId, label: "a", tokenHash: hash("t"), expiresAt: new Date("2030-01-01") })
        ], opts(ws))
      }).pipe(Effect.provide(hub))

      const structure = Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql.unsafe(
          `select (select pg_get_userbyid(relowner) from pg_class where oid = 'agents'::regclass) as owner,
                  (select relrowsecurity and relforcerowsecurity from pg_class where oid = 'agents'::regclass) as rls,
                  (select array_agg(indexdef order by indexname) from pg_indexes where tablename = 'agents') as indexes,
                  (select array_agg(policyname || ' ' || array_to_string(roles, ',') || ' ' || coalesce(qual, '')
                     order by policyname) from pg_policies where tablename = 'agents') as policies,
                  (select array_agg(a.grantee::regrole || ' ' || a.privilege_type order by a.grantee::regrole::text, a.privilege_type)
                     from pg_class c, aclexplode(c.relacl) a where c.oid = 'agents'::regclass) as grants`
        )).pipe(Effect.provide(owner))
      const before = yield* structure

      const refused = yield* Effect.either(ProjectionRunner.rebuild(Agents.projection)).pipe(Effect.provide(hub))
      expect(Either.isLeft(refused) && refused.left.message).toContain("database owner")
      expect(yield* ProjectionRunner.rebuild(Agents.projection).pipe(Effect.provide(owner))).toBe(2)
      expect(yield* structure).toEqual(before)

      yield* Effect.gen(function*() {
        const log = yield* EventLog
        const sql = yield* SqlClient.SqlClient
        // The hub's role still projects into it, and the credential lookup still finds the agent.
        yield* log.append(Streams.agent(agentId), [new E.AgentTokenRevoked({ agentId })], opts(ws))
        const [row] = yield* sql.unsafe<{ revoked_at: Date | null }>(`select revoked_at from agents where id = $1`, [agentId])
        expect(row!.revoked_at).not.toBeNull()
        const found = yield* Scoped.asApp(sql.unsafe<{ id: string }>(`select id from connect_agent_by_token($1)`, [hash("t")]))
        expect(found.map((r) => r.id)).toEqual([agentId])
        const own = yield* Scoped.withWorkspace(ws, sql.unsafe<{ id: string }>(`select id from agents`))
        expect(own.map((r) => r.id)).toEqual([agentId])
        expect(yield* Scoped.withWorkspace(WorkspaceId.make(uuidv7()), sql.unsafe(`select id from agents`))).toEqual([])
        // And it does not own it.
        expect(Either.isLeft(yield* Effect.either(sql.unsafe(`alter table agents disable row level security`)))).toBe(true)
      }).pipe(Effect.provide(hub))
    }), { timeout: 60_000 })
})
