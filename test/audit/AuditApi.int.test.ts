/**
 * `GET /v1/audit/events` on a real hub running as a role that is only a member of `connect_writer` (as the hub's
 * runtime role is): a workspace key sees its own workspace's events and nothing else, whatever it asks; an operator key
 * sees every event; each answered query is recorded once.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import { describe, expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect, Either } from "effect"
import * as AuditApi from "../../audit/AuditApi.ts"
import * as PgQuery from "../../audit/PgQuery.ts"
import { parseFilters } from "../../audit/Query.ts"
import type { StoredEvent } from "../../core/EventLog.ts"
import * as Admin from "../../hub/commands/Admin.ts"
import { DEFAULT_WORKSPACE_ID } from "../../hub/commands/Bootstrap.ts"
import * as Database from "../../hub/db/Database.ts"
import * as Migrations from "../../hub/db/Migrations.ts"
import * as Hub from "../support/Hub.ts"
import * as TestDatabase from "../support/TestDatabase.ts"
import { writerRoleUrl } from "../support/WriterAttack.ts"

/**
 * Two workspaces with a key and a `shared`-labelled agent each, an operator key, and a hub-level refusal; `setup`
 * statements run as the owner after the migrations (database settings, say).
 */
export const worldWith = (setup: ReadonlyArray<string>) => Effect.gen(function*() {
  const url = yield* TestDatabase.makeTestDatabaseUrl
  // Migrated by the owner; the hub then runs without ownership, subject to the policies on events.
  yield* Effect.provide(
    Effect.zipRight(Migrations.run, Effect.flatMap(SqlClient.SqlClient, (sql) => Effect.forEach(setup, (s) => sql.unsafe(s)))),
    PgClient.layer(Database.pgClientConfig(url))
  ).pipe(Effect.orDie)
  const hub = yield* Hub.start({ databaseUrl: yield* writerRoleUrl(url), auditRoutes: AuditApi.layer })
  const a = yield* hub.workspace("a")
  const b = yield* hub.workspace("b")
  const operator = (yield* hub.run(Admin.createApiKey(DEFAULT_WORKSPACE_ID, "ops", "operator")).pipe(Effect.orDie)).key
  const agentA = (yield* hub.http("POST", "/v1/agents", a.apiKey, { label: "shared" })).body
  const agentB = (yield* hub.http("POST", "/v1/agents", b.apiKey, { label: "shared" })).body
  expect((yield* hub.http("GET", "/v1/agents", `pc_${"z".repeat(40)}`)).status).toBe(401)
  return { hub, a, b, operator, agentA, agentB }
})

/** The world on a database with its default settings. */
export const world = worldWith([])

/** `GET /v1/audit/events?<params>` with `key`. */
export const events = (hub: Hub.TestHub, key: string | undefined, params: Record<string, string> | string = {}) =>
  hub.http("GET", `/v1/audit/events?${new URLSearchParams(params).toString()}`, key)

const reads = (all: ReadonlyArray<StoredEvent>) => all.filter((e) => e.event._tag === "AuditRead")

describe("GET /v1/audit/events", () => {
  it.scopedLive("a workspace key sees only its workspace's events with any filters; an operator key sees every event", () =>
    Effect.gen(function*() {
      const { a, agentA, agentB, b, hub, operator } = yield* world
      const all = yield* hub.events
      const ofA = all.filter((e) => e.workspaceId === a.workspaceId).map((e) => e.id)
      expect(ofA.length).toBeGreaterThan(2)
      expect(all.some((e) => e.workspaceId === null)).toBe(true)

      const single: ReadonlyArray<Record<string, string>> = [
        {},
        { workspace: b.workspaceId },
        { agent: agentA.agentId },
        { agent: agentB.agentId },
        { agent: "shared" },
        { type: "agent" },
        { type: "auth" },
        { type: "admin" },
        { type: "ApiKeyAuthFailed,AgentProvisioned,WorkspaceCreated,ApiKeyCreated" },
        { outcome: "denied" },
        { outcome: "allowed" },
        { ip: "127.0.0.0/24" },
        { ip: "0.0.0.0/0" },
        { since: "1h" },
        { until: "2099-01-01" },
        { service: "shared" },
        { limit: "1000" },
        { before: "9007199254740991" }
      ]
      // Every filter alone, then every pair.
      const combos = [...single, ...single.flatMap((x, i) => single.slice(i + 1).map((y) => ({ ...x, ...y })))]
      let seenOwn = 0
      for (const params of combos) {
        const answer = yield* events(hub, b.apiKey, params)
        expect(answer.status, JSON.stringify(params)).toBe(200)
        const got = answer.body.events as ReadonlyArray<{ id: string; workspaceId: string | null }>
        expect(got.filter((e) => e.workspaceId !== b.workspaceId), JSON.stringify(params)).toEqual([])
        expect(got.filter((e) => ofA.includes(e.id))).toEqual([])
        seenOwn += got.length
      }
      expect(seenOwn).toBeGreaterThan(0)
      // Naming workspace A is refused before reading (403, next test); the row-level security alone answers nothing.
      for (const params of single) {
        const { before: _b, limit: _l, ...filters } = params
        const parsed = parseFilters({ ...filters, workspace: a.workspaceId, limit: 1000 }, new Date())
        if (Either.isLeft(parsed)) throw parsed.left
        const read = Effect.flatMap(PgQuery.resolve(parsed.right), (resolved) => PgQuery.query(parsed.right, resolved))
        expect(yield* hub.run(PgQuery.inWorkspace(b.workspaceId, read)).pipe(Effect.orDie), JSON.stringify(params)).toEqual([])
      }
      const asHub = Effect.flatMap(PgQuery.resolve({ workspace: a.workspaceId, limit: 1000 }), (r) =>
        PgQuery.query({ workspace: a.workspaceId, limit: 1000 }, r))
      expect((yield* hub.run(asHub).pipe(Effect.orDie)).length).toBe(ofA.length)
      const mine = yield* events(hub, b.apiKey, { agent: "shared", type: "AgentProvisioned" })
      expect(mine.body.events.map((e: { data: { agentId: string } }) => e.data.agentId)).toEqual([agentB.agentId])

      // The operator sees both workspaces and the hub-level refusal.
      const everything = (yield* events(hub, operator, { limit: "1000" })).body.events as ReadonlyArray<{ workspaceId: string | null }>
      const workspaces = new Set(everything.map((e) => e.workspaceId))
      expect(workspaces).toContain(a.workspaceId)
      expect(workspaces).toContain(b.workspaceId)
      expect(workspaces).toContain(null)
      const labels = (yield* events(hub, operator, { agent: "shared", type: "AgentProvisioned" })).body.events
      expect(labels.map((e: { data: { agentId: string } }) => e.data.agentId).sort()).toEqual([agentA.agentId, agentB.agentId].sort())
    }), 300_000)

  it.scopedLive("records each answered query once, in the reader's workspace (an operator's hub-level), with its filters and count", () =>
    Effect.gen(function*() {
      const { a, b, hub, operator } = yield* world
      const before = reads(yield* hub.events).length
      const first = yield* events(hub, b.apiKey, { type: "agent", limit: "2" })
      expect(first.status).toBe(200)
      const page = yield* events(hub, operator, { limit: "1000" })
      expect(page.body.events.length).toBeGreaterThan(10)
      const after = reads(yield* hub.events)
      expect(after.length - before).toBe(2)
      const [q1, q2] = after.slice(before)
      expect(q1!.event).toMatchObject({ kind: "query", filters: { type: "agent", limit: "2" }, count: first.body.events.length })
      expect(q1!.workspaceId).toBe(b.workspaceId)
      expect(q1!.meta.actor.kind).toBe("apikey")
      expect(q1!.meta.sourceIp).toBe("127.0.0.1")
      expect(q2!.event).toMatchObject({ kind: "query", filters: { limit: "1000" }, count: page.body.events.length })
      // The operator's read is hub-level: workspace keys of its key's workspace do not read it.
      expect(q2!.workspaceId).toBe(null)
      // Workspace B reads its own reads back.
      const own = (yield* events(hub, b.apiKey, { type: "AuditRead" })).body.events
      expect(own.map((e: { id: string }) => e.id)).toEqual([q1!.id])

      // Paging with `before`: the next page starts where the last ended, nothing twice.
      const p1 = (yield* events(hub, operator, { limit: "3" })).body
      const p2 = (yield* events(hub, operator, { limit: "3", before: String(p1.next) })).body
      expect(p2.events[0].position).toBeLessThan(p1.events[2].position)
      expect(p1.next).toBe(p1.events[2].position)

      // A workspace key naming another workspace is refused and recorded as refused keys are, not as a read.
      const scoped = (yield* hub.events).filter((e) => e.event._tag === "ApiKeyAuthFailed").length
      expect(yield* events(hub, b.apiKey, { workspace: a.workspaceId, type: "agent" })).toEqual({
        status: 403,
        body: { error: { code: "Forbidden", message: `this API key reads its own workspace (${b.workspaceId}) only` } }
      })
      const wrongScope = (yield* hub.events).filter((e) => e.event._tag === "ApiKeyAuthFailed").slice(scoped)
      expect(wrongScope.map((e) => [e.event, e.workspaceId])).toMatchObject([[{ reason: "wrong_scope", ip: "127.0.0.1" }, b.workspaceId]])
      expect(reads(yield* hub.events).length).toBe(before + 5)
      // A refused key reads nothing and is recorded as every refused key is; an agent token is the wrong kind.
      const answered = reads(yield* hub.events).length
      expect(answered).toBe(before + 5)
      const failures = (yield* hub.events).filter((e) => e.event._tag === "ApiKeyAuthFailed").length
      expect((yield* events(hub, `pc_${"q".repeat(40)}`)).status).toBe(401)
      expect((yield* hub.events).filter((e) => e.event._tag === "ApiKeyAuthFailed").length).toBe(failures + 1)
      expect((yield* events(hub, "f".repeat(64))).status).toBe(403)
      expect(reads(yield* hub.events).length).toBe(answered)
    }), 300_000)

  it.scopedLive("answers a workspace key's filters when Postgres would plan them in parallel", () =>
    Effect.gen(function*() {
      // Parallel plans even on a handful of rows: under row-level security the source-address function (a plpgsql
      // exception block, which parallel workers cannot run) is not an index condition, so it runs in the scan.
      const { agentB, b, hub, operator } = yield* worldWith([
        `do $$ begin execute format('alter database %I set parallel_setup_cost = 0', current_database());
           execute format('alter database %I set parallel_tuple_cost = 0', current_database());
           execute format('alter database %I set min_parallel_table_scan_size = 0', current_database()); end $$`
      ])
      for (const params of [{ ip: "127.0.0.0/24" }, { ip: "127.0.0.0/8", type: "agent" }, { agent: "shared" }, { outcome: "allowed" }]) {
        expect((yield* events(hub, operator, params)).status, `operator ${JSON.stringify(params)}`).toBe(200)
        const answer = yield* events(hub, b.apiKey, params)
        expect(answer.status, JSON.stringify(params)).toBe(200)
        expect(answer.body.events.every((e: { workspaceId: string }) => e.workspaceId === b.workspaceId)).toBe(true)
      }
      const own = (yield* events(hub, b.apiKey, { ip: "127.0.0.x", type: "AgentProvisioned" })).body.events
      expect(own.map((e: { data: { agentId: string } }) => e.data.agentId)).toEqual([agentB.agentId])
    }), 120_000)
})
