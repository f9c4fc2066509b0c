/**
 * `connect audit --stats` on a real log: the rollup tables equal a GROUP BY over `events` (unknown types, coalesced
 * refusals, bytes, several days and workspaces), so do the answers read from them; a rebuild from 0 gives identical
 * tables; a batch that fails or is interrupted after its writes counts nothing, so running again never counts twice;
 * a follower keeps up with the log and stops with its scope; the hub's role may roll up and read, a workspace sees its
 * own rows; hostile text stops neither the projection nor rendering.
 */
import * as Crypto from "node:crypto"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, Fiber, Layer, Schema } from "effect"
import * as PgStats from "../../audit/PgStats.ts"
import type { StatsOptions } from "../../audit/Stats.ts"
import * as StatsProjection from "../../audit/StatsProjection.ts"
import * as StatsRender from "../../audit/StatsRender.ts"
import { EventLog } from "../../core/EventLog.ts"
import * as E from "../../core/Events.ts"
import { AgentId, LinkId, ServiceId, ShareId, TunnelId, uuidv7, WorkspaceId } from "../../core/Ids.ts"
import type { Projection } from "../../core/Projection.ts"
import type { ProjectionSql } from "../../core/ProjectionSql.ts"
import * as Database from "../../hub/db/Database.ts"
import * as Main from "../../hub/Main.ts"
import * as Migrations from "../../hub/db/Migrations.ts"
import * as PgEventLog from "../../hub/eventlog/PgEventLog.ts"
import * as ProjectionRunner from "../../hub/eventlog/ProjectionRunner.ts"
import * as Scoped from "../../hub/db/Scoped.ts"
import { appendRaw } from "../support/ForeignEvent.ts"
import * as StatsBaseline from "../support/StatsBaseline.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

const HOUR = 3_600_000
const encodeMeta = Schema.encodeSync(E.EventMeta)

/**
 * Appends one event recorded at `at` (a past time the writer would not stamp), chained as the writer chains: the
 * stats are about hours and days, and a test cannot wait for them to pass.
 */
const appendAt = (at: Date, type: string, data: unknown, meta: E.EventMeta, workspaceId: string | null) => {
  const id = uuidv7()
  return appendRaw({ id, stream: id, type, data, meta: encodeMeta(meta), workspaceId, at })
}

const known = (at: Date, event: E.Event, meta: E.EventMeta, workspaceId: string | null) => {
  const { data, type } = E.encodeEvent(event)
  return appendAt(at, type, data, meta, workspaceId)
}

const admin = new E.EventMeta({ actor: { kind: "admin" } })
const asAgent = (id: string, ip?: string) => new E.EventMeta({ actor: { kind: "agent", id }, ...(ip ? { sourceIp: ip } : {}) })
const publicFrom = (ip: string) => new E.EventMeta({ actor: { kind: "public" }, sourceIp: ip })

/** A deterministic generator (mulberry32), so a failure can be replayed. */
const random = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const W = [WorkspaceId.make(uuidv7()), WorkspaceId.make(uuidv7())]
const AGENTS = Array.from({ length: 6 }, (_, i) => ({ id: AgentId.make(uuidv7()), label: `box-${i}`, ws: W[i % 2]! }))
const SERVICES = AGENTS.slice(0, 4).map((a, i) => ({ id: ServiceId.make(uuidv7()), name: `svc-${i}`, agent: a }))
const IPS = ["203.0.113.7", "203.0.113.9", "198.51.100.4", "2001:db8:85a3::5", "2001:db8:85a3:1::9", "192.0.2.1"]
const HASH = "c".repeat(64) as E.Sha256Hex

/**
 * A log over the past days, every kind of event the stats count, `n` draws after the setup (tunnels are two events);
 * returns the time of its last event.
 */
const generate = (n: number, seed = 7, start = Date.now() - 5 * 24 * HOUR) =>
  Effect.gen(function*() {
    const next = random(seed)
    const pick = <A>(xs: ReadonlyArray<A>): A => xs[Math.floor(next() * xs.length)]!
    // Times never go back along the log (a trigger checks it): a second fill starts where the first ended.
    let t = start
    const at = () => new Date((t += Math.floor(next() * 15 * 60_000)))
    for (const a of AGENTS) {
      yield* known(at(), new E.AgentProvisioned({ agentId: a.id, label: a.label, tokenHash: HASH, expiresAt: new Date("2030-01-01") }), admin, a.ws)
    }
    for (const s of SERVICES) {
      yield* known(at(), new E.ServiceExposed({ serviceId: s.id, agentId: s.agent.id, name: s.name, targetHost: "127.0.0.1", targetPort: 5432 }), asAgent(s.agent.id, pick(IPS)), s.agent.ws)
    }
    for (let i = 0; i < n; i++) {
      const a = pick(AGENTS)
      const s = pick(SERVICES)
      const ip = pick(IPS)
      const tunnelId = TunnelId.make(uuidv7())
      const k = Math.floor(next() * 14)
      if (k <= 2) {
        yield* known(at(), new E.TunnelOpened({ tunnelId, serviceId: s.id, serviceName: s.name, fromAgentId: a.id, toAgentId: s.agent.id }), asAgent(a.id, ip), s.agent.ws)
        yield* known(at(), new E.TunnelClosed({ tunnelId, serviceId: s.id, bytesUp: Math.floor(next() * 1e6), bytesDown: Math.floor(next() * 1e7), durationMs: 5, reason: next() < 0.1 ? "connect_failed" : "end" }), asAgent(a.id, ip), s.agent.ws)
      } else if (k === 3) {
        const count = next() < 0.5 ? undefined : 2 + Math.floor(next() * 50)
        yield* known(at(), new E.ReachDenied({ requestedName: `nope-${i}`, fromAgentId: a.id, reason: pick(["not_found", "agent_offline", "rate_limited"] as const), ...(count ? { count } : {}) }), asAgent(a.id, ip), a.ws)
      } else if (k === 4) {
        const count = next() < 0.3 ? undefined : 10 + Math.floor(next() * 1000)
        yield* known(at(), new E.AgentAuthFailed({ reason: pick(["unknown_token", "expired_token"] as const), ip, ...(count ? { count } : {}) }), publicFrom(ip), null)
      } else if (k === 5) {
        yield* known(at(), new E.ApiKeyAuthFailed({ reason: "unknown_api_key", ip, count: 3 }), publicFrom(ip), null)
      } else if (k === 6) {
        const denied = next() < 0.4
        yield* known(at(), new E.LinkAccessed({ linkId: LinkId.make(uuidv7()), ip, method: "GET", path: "/", status: denied ? 403 : 200, outcome: denied ? "denied" : "allowed", ...(denied && next() < 0.5 ? { reason: "path_not_allowed" as const } : {}), bytes: Math.floor(next() * 5000), durationMs: 1 }), publicFrom(ip), s.agent.ws)
      } else if (k === 7) {
        yield* known(at(), new E.AgentTokenRotated({ agentId: a.id, newTokenHash: HASH, newExpiresAt: new Date("2030-01-01"), oldValidUntil: new Date("2030-01-01") }), asAgent(a.id), a.ws)
      } else if (k === 8) {
        yield* known(at(), new E.AgentIpChanged({ agentId: a.id, previousIp: pick(IPS), newIp: ip }), asAgent(a.id), a.ws)
      } else if (k === 9) {
        yield* known(at(), new E.AgentConnected({ agentId: a.id, ip, userAgent: "t", transport: "ws" }), asAgent(a.id, ip), a.ws)
      } else if (k === 10) {
        yield* known(at(), new E.ShareAccessed({ shareId: ShareId.make(uuidv7()), outcome: "denied", reason: "expired" }), asAgent(a.id), a.ws)
      } else if (k === 11) {
        // A type a newer build wrote: counted by its name only, whatever its data looks like.
        yield* appendAt(at(), "ServiceTeleported", { agentId: a.id, serviceId: s.id, ip: "10.9.9.9", count: 9, bytes: 77, reason: "x" }, asAgent(a.id, ip), a.ws)
      } else if (k === 12) {
        yield* appendAt(at(), "AgentAuthFailedV2", { count: 40 }, admin, null)
      } else {
        yield* known(at(), new E.WorkspaceCreated({ workspaceId: pick(W), name: "w" }), admin, null)
      }
    }
    return t
  })

/** Every row of every rollup table, in a stable order (each table's own, or the same views' over `events`). */
const snapshot = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const all = (table: string, order: string) => sql.unsafe(`select * from ${table} order by ${order}`)
  return {
    hourly: yield* all("audit_rollup_hourly", "hour, workspace_id, type, outcome, reason, agent_id, service_id"),
    ips: yield* all("audit_rollup_ips", "hour, workspace_id, ip"),
    span: yield* all("audit_rollup_span", "hour, workspace_id"),
    names: yield* all("audit_rollup_names", "kind, id")
  }
})

/** The log (migrated, the hub's inline projections) and the baseline views, on one fresh database. */
const setup = Effect.gen(function*() {
  const url = yield* TestDatabase.makeTestDatabaseUrl
  const hub = yield* Layer.build(
    PgEventLog.layer({ inline: Main.INLINE_PROJECTIONS }).pipe(
      Layer.provideMerge(Layer.effectDiscard(Migrations.run)),
      Layer.provideMerge(PgClient.layer(Database.pgClientConfig(url, { maxConnections: 6 })))
    )
  )
  yield* StatsBaseline.create.pipe(Effect.provide(hub))
  return { hub, url }
})

const catchUp = (projection: Projection<ProjectionSql> = StatsProjection.projection, batchSize = 37) =>
  ProjectionRunner.catchUp(projection, { batchSize })

describe("audit --stats", () => {
  it.scopedLive("the rollups equal a GROUP BY over events, incrementally and after a rebuild from 0", () =>
    Effect.gen(function*() {
      const { hub } = yield* setup
      yield* Effect.gen(function*() {
        const end = yield* generate(400)
        expect(yield* catchUp()).toBe((yield* (yield* EventLog).head).position)
        const expected = yield* StatsBaseline.within(snapshot)
        const rolled = yield* snapshot
        expect(rolled.hourly.length).toBeGreaterThan(50)
        expect(rolled).toEqual(expected)
        // Coalesced refusals count for their `count`, unknown types by name only.
        const sql = yield* SqlClient.SqlClient
        const [auth] = yield* sql.unsafe<{ events: number; count: number }>(
          `select sum(events)::bigint as events, sum(count)::bigint as count from audit_rollup_hourly where type = 'AgentAuthFailed'`
        )
        expect(auth!.count).toBeGreaterThan(auth!.events * 5)
        const future = yield* sql.unsafe(
          `select distinct outcome, reason, agent_id, service_id, count = events as single, bytes from audit_rollup_hourly where type = 'ServiceTeleported'`
        )
        expect(future).toEqual([{ outcome: "allowed", reason: null, agent_id: null, service_id: null, single: true, bytes: 0 }])

        // More events, some through the real writer (now), caught up from the checkpoint.
        yield* generate(150, 11, end)
        const log = yield* EventLog
        yield* log.append("live", [new E.AgentConnected({ agentId: AGENTS[0]!.id, ip: "192.0.2.77", userAgent: "t", transport: "ws" })], {
          expectedVersion: "any", workspaceId: W[0]!, meta: asAgent(AGENTS[0]!.id, "192.0.2.77")
        })
        yield* catchUp(StatsProjection.projection, 1000)
        const incremental = yield* snapshot
        expect(incremental).toEqual(yield* StatsBaseline.within(snapshot))

        // Rebuilt from position 0 into shadow tables: identical content, checkpoint at the head.
        expect(yield* ProjectionRunner.rebuild(StatsProjection.projection, { pageSize: 101 })).toBe((yield* log.head).position)
        expect(yield* snapshot).toEqual(incremental)
        expect(yield* ProjectionRunner.checkpoint(StatsProjection.NAME)).toBe((yield* log.head).position)
      }).pipe(Effect.provide(hub))
    }), { timeout: 120_000 })

  it.scopedLive("every answer read from the rollups is the answer of the same statements over events", () =>
    Effect.gen(function*() {
      const { hub } = yield* setup
      yield* Effect.provide(Effect.zipRight(generate(500, 3), catchUp()), hub)
      const now = Date.now()
      const cases: ReadonlyArray<StatsOptions> = [
        { limit: 50, reveal: false },
        { limit: 50, reveal: true },
        { limit: 50, reveal: false, since: new Date(now - 3 * 24 * HOUR), until: new Date(now - 1 * 24 * HOUR) },
        { limit: 50, reveal: false, workspace: W[1]! },
        { limit: 3, reveal: false, by: "agent", since: new Date(now - 2 * 24 * HOUR) },
        { limit: 2, reveal: false, by: "ip" },
        { limit: 50, reveal: false, until: new Date(now - 10 * 24 * HOUR) }
      ]
      for (const options of cases) {
        const fromRollups = yield* PgStats.query(options).pipe(Effect.provide(hub))
        const fromEvents = yield* StatsBaseline.query(options).pipe(Effect.provide(hub))
        expect(fromRollups).toEqual(fromEvents)
      }
      const all = yield* PgStats.query({ limit: 50, reveal: false }).pipe(Effect.provide(hub))
      expect(all.days.length).toBeGreaterThanOrEqual(3)
      expect(all.denials.some((d) => d.count > d.events)).toBe(true)
      expect(all.services.every((s) => s.name !== null)).toBe(true)
      expect(all.agents.every((a) => a.label !== null)).toBe(true)
      expect(all.addresses.map((a) => a.address)).toContain("2001:db8:85a3::/48")
      expect(StatsRender.render(all)).toContain(`As of position ${all.asOf}`)
    }), { timeout: 120_000 })

  it.scopedLive("a batch that fails or is interrupted after its writes leaves nothing, so running again counts once", () =>
    Effect.gen(function*() {
      const { hub } = yield* setup
      yield* Effect.gen(function*() {
        yield* generate(300, 5)
        const sql = yield* SqlClient.SqlClient
        // Fails after writing its third batch: the batch's rows and checkpoint roll back together.
        let batches = 0
        const failing: Projection<ProjectionSql> = {
          ...StatsProjection.projection,
          apply: (events) =>
            Effect.zipRight(StatsProjection.projection.apply(events), ++batches === 3 ? Effect.fail("crash") : Effect.void)
        }
        const failed = yield* Effect.either(catchUp(failing, 50))
        expect(Either.isLeft(failed)).toBe(true)
        expect(yield* ProjectionRunner.checkpoint(StatsProjection.NAME)).toBe(100)
        const [partial] = yield* sql.unsafe<{ events: number }>(`select sum(events)::bigint as events from audit_rollup_span`)
        expect(partial!.events).toBe(100)

        // Interrupted mid-batch, after its writes were sent (a process killed there): the same.
        const written = yield* Deferred.make<void>()
        const stuck: Projection<ProjectionSql> = {
          ...StatsProjection.projection,
          apply: (events) =>
            Effect.zipRight(StatsProjection.projection.apply(events), Effect.zipRight(Deferred.succeed(written, undefined), Effect.never))
        }
        const fiber = yield* Effect.fork(catchUp(stuck, 50))
        yield* Deferred.await(written)
        yield* Fiber.interrupt(fiber)
        expect(yield* ProjectionRunner.checkpoint(StatsProjection.NAME)).toBe(100)

        // Two catch-ups at once (a CLI beside a hub): compare-and-set, every batch applied once.
        yield* Effect.all([catchUp(StatsProjection.projection, 20), catchUp(StatsProjection.projection, 30)], { concurrency: 2 })
        expect(yield* snapshot).toEqual(yield* StatsBaseline.within(snapshot))
      }).pipe(Effect.provide(hub))
    }), { timeout: 120_000 })

  it.scopedLive("the hub's follower keeps the rollups at the head while it runs and stops with its scope", () =>
    Effect.gen(function*() {
      const { hub } = yield* setup
      yield* Effect.gen(function*() {
        const log = yield* EventLog
        const following = yield* Layer.build(ProjectionRunner.layerFollow([StatsProjection.projection]).pipe(Layer.provide(Layer.succeedContext(hub))))
        void following
        for (let i = 0; i < 20; i++) {
          yield* log.append(`w-${i}`, [new E.WorkspaceCreated({ workspaceId: WorkspaceId.make(uuidv7()), name: `w${i}` })], { expectedVersion: "any", workspaceId: null, meta: admin })
        }
        const deadline = Date.now() + 15_000
        while ((yield* ProjectionRunner.checkpoint(StatsProjection.NAME)) < 20 && Date.now() < deadline) yield* Effect.sleep("20 millis")
        expect(yield* ProjectionRunner.checkpoint(StatsProjection.NAME)).toBe(20)
        expect(yield* snapshot).toEqual(yield* StatsBaseline.within(snapshot))
      }).pipe(Effect.provide(hub), Effect.scoped)
      // The scope closed: the follower stopped, so a later append moves nothing.
      yield* Effect.gen(function*() {
        const log = yield* EventLog
        yield* log.append("after", [new E.WorkspaceCreated({ workspaceId: WorkspaceId.make(uuidv7()), name: "after" })], { expectedVersion: "any", workspaceId: null, meta: admin })
        yield* Effect.sleep("300 millis")
        expect(yield* ProjectionRunner.checkpoint(StatsProjection.NAME)).toBe(20)
      }).pipe(Effect.provide(hub))
    }), { timeout: 60_000 })

  it.scopedLive("the hub's role (connect_writer) rolls up and reads; a workspace's connect_app sees its own rows only", () =>
    Effect.gen(function*() {
      const { hub, url } = yield* setup
      const role = `connect_t_stats_${Crypto.randomBytes(4).toString("hex")}`
      const password = Crypto.randomBytes(12).toString("hex")
      const owner = (statement: string) => Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(statement)).pipe(Effect.provide(hub))
      yield* Effect.acquireRelease(
        owner(`create role ${role} login password '${password}' in role connect_writer`),
        () => owner(`drop role if exists ${role}`).pipe(Effect.ignore)
      )
      yield* generate(200, 9).pipe(Effect.provide(hub))
      const asHub = new URL(url)
      asHub.username = role
      asHub.password = password
      const writer = yield* Layer.build(
        PgEventLog.layer().pipe(Layer.provideMerge(PgClient.layer(Database.pgClientConfig(asHub.toString(), { maxConnections: 3 }))))
      )
      const stats = yield* Effect.zipRight(catchUp(), PgStats.query({ limit: 50, reveal: false })).pipe(Effect.provide(writer))
      expect(stats).toEqual(yield* StatsBaseline.query({ limit: 50, reveal: false }).pipe(Effect.provide(hub)))
      const seen = yield* Scoped.select<{ workspace_id: string | null }>(W[0]!, `select distinct workspace_id from audit_rollup_hourly`)
        .pipe(Effect.provide(writer))
      expect(seen).toEqual([{ workspace_id: W[0] }])
      // The owner-only part stays the owner's: the hub's role may not rebuild.
      const refused = yield* Effect.either(ProjectionRunner.rebuild(StatsProjection.projection)).pipe(Effect.provide(writer))
      expect(Either.isLeft(refused)).toBe(true)
    }), { timeout: 120_000 })

  it.scopedLive("hostile text (1 MB names, types and addresses) neither stops the projection nor breaks the tables", () =>
    Effect.gen(function*() {
      const { hub } = yield* setup
      yield* Effect.gen(function*() {
        const huge = "x".repeat(1_000_000)
        const agentId = AgentId.make(uuidv7())
        const serviceId = ServiceId.make(uuidv7())
        yield* known(new Date(), new E.AgentProvisioned({ agentId, label: `\u202e${huge}`, tokenHash: HASH, expiresAt: new Date("2030-01-01") }), admin, W[0]!)
        yield* known(new Date(), new E.TunnelOpened({ tunnelId: TunnelId.make(uuidv7()), serviceId, serviceName: "ok", fromAgentId: agentId, toAgentId: agentId }), asAgent(agentId, huge), W[0]!)
        yield* known(new Date(), new E.ReachDenied({ requestedName: huge, fromAgentId: agentId, reason: "not_found", count: 3 }), asAgent(agentId, "\u001b[31m1.2.3.4"), W[0]!)
        // Indexed columns (the type, the actor's id) cannot hold 1 MB: 2,000 characters, far past the rollup's caps.
        yield* appendAt(new Date(), `Type${"y".repeat(2000)}`, { label: huge }, asAgent("z".repeat(2000)), W[0]!)
        yield* catchUp()
        const stats = yield* PgStats.query({ limit: 50, reveal: true })
        expect(stats.events).toBe(4)
        const text = StatsRender.render(stats)
        expect(text.length).toBeLessThan(20_000)
        // eslint-disable-next-line no-control-regex
        expect(text).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f\u202e]/)
        expect(text).toContain("xxxxxxxx")
        expect(JSON.parse(JSON.stringify(StatsRender.toJson(stats))).events).toBe(4)
      }).pipe(Effect.provide(hub))
    }), { timeout: 60_000 })
})
