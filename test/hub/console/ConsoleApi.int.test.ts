/**
 * What the web console reads, on a real hub and Postgres, called as the browser calls it — with the session cookie
 * (and by editing the request): addresses are masked by the hub for a workspace key whatever it asks; the live tail
 * answers as events commit, only the key's workspace, one `AuditRead` per tail (not per answer), bounded per key and
 * cleaned up when abandoned; events per hour for the Overview; the last verify run and checkpoint; an operator's
 * agents and services of any workspace.
 */
import { randomBytes } from "node:crypto"
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import type { StoredEvent } from "../../../core/EventLog.ts"
import { Effect } from "effect"
import WebSocket from "ws"
import * as AuditApi from "../../../audit/AuditApi.ts"
import * as StatsProjection from "../../../audit/StatsProjection.ts"
import * as Tails from "../../../audit/Tails.ts"
import { verify } from "../../../audit/Verify.ts"
import * as VerifyRecord from "../../../audit/VerifyRecord.ts"
import { EventLog } from "../../../core/EventLog.ts"
import * as MemoryEventLog from "../../../core/MemoryEventLog.ts"
import * as Admin from "../../../hub/commands/Admin.ts"
import { DEFAULT_WORKSPACE_ID } from "../../../hub/commands/Bootstrap.ts"
import * as ProjectionRunner from "../../../hub/eventlog/ProjectionRunner.ts"
import * as Hub from "../../support/Hub.ts"

type Answer = { readonly status: number; readonly body: any }

/** A request as the console's page makes it: the session cookie, no bearer. */
const withCookie = (hub: Hub.TestHub, cookie: string, path: string, signal?: AbortSignal) =>
  Effect.promise(async (): Promise<Answer> => {
    const response = await fetch(`${hub.httpUrl}${path}`, { headers: { cookie }, ...(signal ? { signal } : {}) })
    const text = await response.text()
    return { status: response.status, body: text ? JSON.parse(text) : undefined }
  })

/** Signs in at /ui with `apiKey`; the cookie the browser would send. */
const signIn = (hub: Hub.TestHub, apiKey: string) =>
  Effect.promise(async () => {
    const response = await fetch(`${hub.httpUrl}/ui/session`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ apiKey })
    })
    expect(response.status).toBe(200)
    return response.headers.get("set-cookie")!.split(";")[0]!
  })

/** Connects as the agent of `token` over the relay's JSON transport until welcomed (its address then on the log). */
const connectAgent = (hub: Hub.TestHub, token: string) =>
  Effect.promise(() =>
    new Promise<void>((resolve, reject) => {
      const ws = new WebSocket(hub.agentUrl, ["connect.ws.v1"], { perMessageDeflate: false })
      const timer = setTimeout(() => {
        ws.terminate()
        reject(new Error("no Welcome within 15 s"))
      }, 15_000)
      ws.on("open", () => ws.send(JSON.stringify({ _tag: "Hello", protocol: 1, revision: 1, token, transport: "ws", agentVersion: "test" })))
      ws.on("message", (raw) => {
        if ((JSON.parse(String(raw)) as { _tag: string })._tag === "Welcome") {
          clearTimeout(timer)
          ws.close()
          resolve()
        }
      })
      ws.on("error", reject)
    })
  )

const world = Effect.gen(function*() {
  const hub = yield* Hub.start({ auditRoutes: AuditApi.layer })
  const a = yield* hub.workspace("a")
  const b = yield* hub.workspace("b")
  const operator = (yield* hub.run(Admin.createApiKey(DEFAULT_WORKSPACE_ID, "ops", "operator")).pipe(Effect.orDie)).key
  return { hub, a, b, operator }
})

/** Polls the hub's events until `check` finds something (20 s at most: coalesced refusals wait for their window). */
const waitFor = <A>(hub: Hub.TestHub, check: (events: ReadonlyArray<StoredEvent>) => A | undefined) =>
  Effect.gen(function*() {
    const deadline = Date.now() + 20_000
    while (true) {
      const found = check(yield* hub.events)
      if (found !== undefined) return found
      if (Date.now() > deadline) return yield* Effect.dieMessage("expected events did not appear in time")
      yield* Effect.sleep("200 millis")
    }
  })

const auditReads = (hub: Hub.TestHub, kind: string) =>
  Effect.map(hub.events, (all) => all.filter((e) => e.type === "AuditRead" && (e.event as unknown as { kind: string }).kind === kind))

describe("the console's reads", () => {
  it.scopedLive("a workspace key's session never receives an address unmasked, whatever it asks; an operator's does", () =>
    Effect.gen(function*() {
      const { a, hub, operator } = yield* world
      const agent = (yield* hub.http("POST", "/v1/agents", a.apiKey, { label: "alpha" })).body
      yield* connectAgent(hub, agent.token)
      const cookie = yield* signIn(hub, a.apiKey)

      const answers = [
        yield* withCookie(hub, cookie, "/v1/audit/events?limit=1000"),
        yield* withCookie(hub, cookie, "/v1/audit/tail?after=0&wait=0&limit=1000"),
        yield* withCookie(hub, cookie, "/v1/audit/stats?by=ip&reveal=true"),
        yield* withCookie(hub, cookie, "/v1/agents"),
        yield* withCookie(hub, cookie, `/v1/workspaces/${a.workspaceId}/agents`),
        yield* withCookie(hub, cookie, "/v1/audit/access?service=nothing&at=0s&reveal=true")
      ]
      expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 404])
      const [events, tail, stats, agents, listed] = answers.map((r) => r.body)
      expect(events.events.some((e: any) => e.type === "AgentConnected" && e.data.ip === "127.0.0.x")).toBe(true)
      expect(events.events.filter((e: any) => e.meta.sourceIp !== undefined).every((e: any) => e.meta.sourceIp === "127.0.0.x")).toBe(true)
      // The same events and the page's own AuditRead, oldest first.
      expect(tail.events.length).toBeGreaterThan(events.events.length)
      expect(stats.masked).toBe(true)
      expect(agents.agents).toMatchObject([{ label: "alpha", lastIp: "127.0.0.x" }])
      expect(listed.agents).toMatchObject([{ label: "alpha", lastIp: "127.0.0.x" }])
      for (const answer of answers) expect(JSON.stringify(answer.body)).not.toContain("127.0.0.1")
      // Nor can it filter by a narrower prefix than its mask: bisecting with ip=…/25 … /32 would recover the address.
      // Refused (403) and recorded as an out-of-scope read, in events and tails alike; its own /24 is fine.
      const refusedBefore = (yield* hub.events).filter((e) => e.type === "ApiKeyAuthFailed").length
      for (const path of ["/v1/audit/events?ip=127.0.0.1", "/v1/audit/events?ip=127.0.0.0/25", "/v1/audit/tail?ip=127.0.0.1/32&wait=0", "/v1/audit/events?ip=::1/64"]) {
        const narrow = yield* withCookie(hub, cookie, path)
        expect(narrow.status, path).toBe(403)
        expect(narrow.body.error.message, path).toContain("/24")
      }
      expect((yield* hub.events).filter((e) => e.type === "ApiKeyAuthFailed").length).toBeGreaterThan(refusedBefore)
      expect((yield* withCookie(hub, cookie, "/v1/audit/events?ip=127.0.0.x&type=AgentConnected")).body.events.length).toBeGreaterThan(0)

      // The operator key reads them in full (the console masks them for display unless asked).
      const full = yield* hub.http("GET", "/v1/audit/events?type=AgentConnected", operator)
      expect(full.body.events[0].data.ip).toBe("127.0.0.1")
      expect((yield* hub.http("GET", `/v1/workspaces/${a.workspaceId}/agents`, operator)).body.agents[0].lastIp).toBe("127.0.0.1")
    }), 120_000)

  it.scopedLive("a live tail answers as events commit, only the key's workspace, one AuditRead per tail, bounded per key", () =>
    Effect.gen(function*() {
      const { a, b, hub } = yield* world
      const cookie = yield* signIn(hub, a.apiKey)
      const opened = yield* withCookie(hub, cookie, "/v1/audit/tail?type=AgentProvisioned&wait=0")
      expect(opened.status).toBe(200)
      expect(opened.body.events).toEqual([])
      const { position, tail } = opened.body

      // A long poll: it waits for a commit; B's agent is not A's, A's answers it.
      const started = Date.now()
      const waiting = Effect.runPromise(withCookie(hub, cookie, `/v1/audit/tail?tail=${tail}&after=${position}`))
      yield* Effect.sleep("500 millis")
      yield* hub.http("POST", "/v1/agents", b.apiKey, { label: "bravo" })
      yield* Effect.sleep("300 millis")
      yield* hub.http("POST", "/v1/agents", a.apiKey, { label: "alpha" })
      const answered = yield* Effect.promise(() => waiting)
      expect(answered.status).toBe(200)
      expect(answered.body.events.map((e: any) => [e.type, e.data.label])).toEqual([["AgentProvisioned", "alpha"]])
      expect(Date.now() - started).toBeLessThan(15_000)

      // Asked again and again, it stays one read on the log.
      let after = answered.body.position
      for (let i = 0; i < 5; i++) {
        const again = yield* withCookie(hub, cookie, `/v1/audit/tail?tail=${tail}&after=${after}&wait=0`)
        expect(again).toMatchObject({ status: 200, body: { tail, events: [] } })
        after = again.body.position
      }
      expect((yield* auditReads(hub, "tail")).map((e) => (e.event as any).filters)).toEqual([{ type: "AgentProvisioned" }])
      // It reads forward only: asking it again from an earlier position (the whole history under one read) is refused.
      const back = yield* withCookie(hub, cookie, `/v1/audit/tail?tail=${tail}&after=0&wait=0`)
      expect(back.status).toBe(400)
      expect(back.body.error.message).toContain("goes back")

      // With nothing to show it waits its whole time, past the hub's 10 s request deadline (a GET has no body to wait
      // for), and answers with nothing.
      const quiet = Date.now()
      const idle = yield* withCookie(hub, cookie, `/v1/audit/tail?tail=${tail}&after=${after}&wait=12`)
      expect(idle).toMatchObject({ status: 200, body: { tail, events: [] } })
      expect(Date.now() - quiet).toBeGreaterThanOrEqual(11_500)

      // An abandoned request (the tab closed) ends on the hub; the tail goes on.
      const abort = new AbortController()
      const abandoned = Effect.runPromise(withCookie(hub, cookie, `/v1/audit/tail?tail=${tail}&after=${after}`, abort.signal)).catch(() => "aborted")
      yield* Effect.sleep("200 millis")
      abort.abort()
      expect(yield* Effect.promise(() => abandoned)).toBe("aborted")
      expect((yield* withCookie(hub, cookie, `/v1/audit/tail?tail=${tail}&after=${after}&wait=0`)).status).toBe(200)

      // Refused: another key's tail, filters beside a tail, another workspace, a ninth tail of one key.
      // Another key's tail is a refused read (403, recorded); a made-up id is simply not found.
      const foreign = yield* hub.http("GET", `/v1/audit/tail?tail=${tail}&after=0&wait=0`, b.apiKey)
      expect(foreign.status).toBe(403)
      expect((yield* hub.http("GET", `/v1/audit/tail?tail=${"0".repeat(32)}&after=0&wait=0`, b.apiKey)).status).toBe(404)
      expect((yield* withCookie(hub, cookie, `/v1/audit/tail?tail=${tail}&after=0&type=auth`)).status).toBe(400)
      expect((yield* withCookie(hub, cookie, `/v1/audit/tail?workspace=${b.workspaceId}&wait=0`)).status).toBe(403)
      expect((yield* withCookie(hub, cookie, `/v1/audit/tail?after=-1&wait=0`)).status).toBe(400)
      expect((yield* withCookie(hub, cookie, `/v1/audit/tail?wait=26`)).status).toBe(400)
      for (let i = 1; i < Tails.PER_KEY; i++) {
        expect((yield* withCookie(hub, cookie, "/v1/audit/tail?wait=0")).status).toBe(200)
      }
      const ninth = yield* withCookie(hub, cookie, "/v1/audit/tail?wait=0")
      expect(ninth).toMatchObject({ status: 429, body: { error: { code: "TooManyRequests" } } })
      // Both refusals are on the record, as refused API keys are (coalesced per address and window).
      const refusedKeys = yield* waitFor(hub, (all) => {
        const reasons = all.filter((e) => e.type === "ApiKeyAuthFailed").map((e) => (e.event as unknown as { reason: string }).reason)
        return reasons.includes("wrong_scope") && reasons.includes("rate_limited") ? reasons : undefined
      })
      expect(refusedKeys).toEqual(expect.arrayContaining(["wrong_scope", "rate_limited"]))
      expect((yield* hub.http("GET", "/v1/audit/tail?wait=0", b.apiKey)).status).toBe(200)
    }), 120_000)

  it.scopedLive("events per hour for the Overview, the last verify run and checkpoint, an operator's view of any workspace", () =>
    Effect.gen(function*() {
      const { a, b, hub, operator } = yield* world
      yield* hub.run(ProjectionRunner.catchUp(StatsProjection.projection)).pipe(Effect.orDie)
      const week = yield* hub.http("GET", "/v1/audit/stats?since=7d&by=hour", operator)
      expect(week.status).toBe(200)
      expect(week.body.events).toBeGreaterThan(3)
      expect(week.body.hours.length).toBeGreaterThanOrEqual(7 * 24)
      expect(week.body.hours.length).toBeLessThanOrEqual(7 * 24 + 2)
      expect(week.body.hours[0].hour).toMatch(/^\d{4}-\d\d-\d\dT\d\d$/)
      expect(week.body.hours.reduce((n: number, h: { events: number }) => n + h.events, 0)).toBe(week.body.events)

      expect((yield* hub.http("GET", "/v1/audit/integrity", operator)).body.verify).toBe(null)
      const result = yield* hub.run(verify({})).pipe(Effect.orDie)
      yield* hub.run(VerifyRecord.record({ independent: false }, result, []))
      const integrity = (yield* hub.http("GET", "/v1/audit/integrity", operator)).body
      expect(integrity.verify).toMatchObject({
        type: "AuditRead",
        workspaceId: null,
        data: { kind: "verify", verified: "intact", count: result.count, fromPosition: 1, toPosition: result.to }
      })
      // Hub-level: a workspace key reads neither.
      expect((yield* hub.http("GET", "/v1/audit/integrity", a.apiKey)).body).toEqual({ verify: null, checkpoint: null })

      yield* hub.http("POST", "/v1/agents", b.apiKey, { label: "bravo" })
      const services = yield* hub.http("GET", `/v1/workspaces/${b.workspaceId}/services`, operator)
      expect(services).toEqual({ status: 200, body: { services: [] } })
      expect((yield* hub.http("GET", `/v1/workspaces/${b.workspaceId}/agents`, operator)).body.agents).toMatchObject([{ label: "bravo" }])
      expect((yield* hub.http("GET", `/v1/workspaces/${b.workspaceId}/services`, a.apiKey)).status).toBe(403)
    }), 120_000)
})

describe("a stranger at the sign-in form", () => {
  it.scopedLive("10,000 wrong keys: a few events, kilobytes of log, and 10,000 refusals in the stats", () =>
    Effect.gen(function*() {
      const { hub, operator } = yield* world
      const size = hub.run(Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql.unsafe<{ rel: number }>(`select pg_total_relation_size('events')::float8 as rel`))).pipe(
          Effect.map((rows) => Number(rows[0]!.rel)),
          Effect.orDie
        )
      const before = yield* size
      const statuses = yield* Effect.promise(async () => {
        const seen = new Map<number, number>()
        // 16 strangers' connections at once, 10,000 attempts in all (one after another took minutes on a loaded machine).
        let left = 10_000
        const stranger = async () => {
          while (left > 0) {
            left--
            const response = await fetch(`${hub.httpUrl}/ui/session`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({ apiKey: `pc_${randomBytes(30).toString("hex")}` })
            })
            await response.arrayBuffer()
            seen.set(response.status, (seen.get(response.status) ?? 0) + 1)
          }
        }
        await Promise.all(Array.from({ length: 16 }, stranger))
        return seen
      })
      expect([...statuses.keys()].sort()).toEqual([401, 429])
      const refusals = Effect.map(hub.events, (all) => {
        const failed = all.filter((e) => e.type === "ConsoleSignInFailed")
        return { events: failed.length, count: failed.reduce((n, e) => n + ((e.event as unknown as { count?: number }).count ?? 1), 0) }
      })
      // The last window is written when it ends (10 s after its first refusal).
      let recorded = yield* refusals
      for (let i = 0; i < 60 && recorded.count < 10_000; i++) {
        yield* Effect.sleep("500 millis")
        recorded = yield* refusals
      }
      expect(recorded.count).toBe(10_000)
      expect(recorded.events).toBeLessThan(100)
      const grown = (yield* size) - before
      console.log(`10,000 wrong console keys: ${recorded.events} events, events relation +${grown} B`)
      expect(grown).toBeLessThan(256 * 1024)
      // And the stats count every refusal, once the rollups reach them (as the hub's follower brings them).
      yield* hub.run(ProjectionRunner.catchUp(StatsProjection.projection)).pipe(Effect.orDie)
      const counted = Effect.map(hub.http("GET", "/v1/audit/stats?since=1h&by=type", operator), (r) =>
        (r.body.denials as Array<{ type: string; count: number }>).filter((d) => d.type === "ConsoleSignInFailed")
          .reduce((n, d) => n + d.count, 0))
      let inStats = yield* counted
      for (let i = 0; i < 60 && inStats < 10_000; i++) {
        yield* Effect.sleep("500 millis")
        inStats = yield* counted
      }
      expect(inStats).toBe(10_000)
    }), 300_000)
})

describe("live tails", () => {
  it.live("a tail no request names for its idle time is dropped, and the log's subscription with the last one", () =>
    Effect.gen(function*() {
      const tails = yield* Tails.make({ idleMs: 200 })
      const tail = yield* tails.open({ apiKeyId: "key", workspaceId: "ws", scope: "workspace" }, { limit: 10 }, { agentIds: [], serviceIds: [] })
      expect(typeof tail).toBe("object")
      expect(yield* tails.size).toBe(1)
      yield* Effect.sleep("700 millis")
      expect(yield* tails.size).toBe(0)
      expect(yield* tails.take((tail as Tails.Tail).id, "key")).toBe("unknown")
    }).pipe(Effect.scoped, Effect.provide(MemoryEventLog.layer)))

  it.live("a newer request of the same tail answers the one before it at once", () =>
    Effect.gen(function*() {
      const log = yield* EventLog
      const tails = yield* Tails.make()
      const tail = (yield* tails.open({ apiKeyId: "key", workspaceId: "ws", scope: "workspace" }, { limit: 10 }, { agentIds: [], serviceIds: [] })) as Tails.Tail
      const head = yield* tails.head
      const first = yield* Effect.fork(tails.waitPast(tail, head, Date.now() + 20_000))
      yield* Effect.sleep("100 millis")
      yield* tails.take(tail.id, "key")
      expect(yield* first.await.pipe(Effect.timeout("2 seconds"), Effect.flatten)).toBe(false)
      expect(log).toBeDefined()
    }).pipe(Effect.scoped, Effect.provide(MemoryEventLog.layer)))
})
