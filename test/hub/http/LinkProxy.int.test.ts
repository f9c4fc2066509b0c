/**
 * The public-link proxy against faults and strangers, in this process: a real hub on a fresh database (behind a
 * cuttable proxy where the test needs one), a real agent connection exposing a real HTTP service, requests over real
 * sockets. Uploads outlast the request deadline while their bytes come and are cut when they stop; a POST reaches the
 * service once whatever happens to its connection; the answer is 503 while the log is unavailable or stalled; a token
 * that matches no link is recorded, coalesced per address, and costs its address a bounded number of lookups; a link
 * revoked through another hub on the same database is refused at once.
 */
import * as Crypto from "node:crypto"
import * as Http from "node:http"
import * as Net from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { DEFAULT_LIMITS, type HttpLimits } from "../../../hub/HubConfig.ts"
import * as Hub from "../../support/Hub.ts"
import * as TcpProxy from "../../support/TcpProxy.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"
import { createLink, send, world } from "../../support/LinkWorld.ts"


/**
 * Polls the hub's events until `check` finds something (20 s at most: refusals after a window's first are recorded at
 * the end of their 10 s window).
 */
const waitForEvents = <A>(hub: Hub.TestHub, check: (events: ReadonlyArray<any>) => A | undefined) =>
  Effect.gen(function*() {
    const deadline = Date.now() + 20_000
    while (true) {
      const events = (yield* hub.events).map((e) => ({ ...e.event, _stream: e.stream, _workspaceId: e.workspaceId }))
      const found = check(events)
      if (found !== undefined) return found
      if (Date.now() > deadline) return yield* Effect.dieMessage("expected events did not appear in time")
      yield* Effect.sleep("100 millis")
    }
  })

describe("public links: limits of their own", () => {
  it.scopedLive("an upload that outlasts the request deadline goes through while its bytes come, and is cut once they stop", () =>
    Effect.gen(function*() {
      const limits: HttpLimits = { ...DEFAULT_LIMITS, headersTimeout: "1 second", requestTimeout: "1 second", linkIdleTimeout: "2 seconds" }
      const { hub, apiKey } = yield* world({ config: { limits } })
      const link = yield* createLink(hub, apiKey, { methods: ["GET", "POST"] })
      // 12 chunks of 64 KiB, one every 300 ms: 3.6 s, over three times the request deadline (node's requestTimeout,
      // 300 s by default, cut such an upload of a large file after five minutes).
      const chunks = Array.from({ length: 12 }, (_, i) => Crypto.randomBytes(64 * 1024 + i))
      const slow = yield* send(hub.port, `${link.path}/upload`, { chunks, everyMs: 300 })
      expect(slow.status).toBe(200)
      expect(slow.ms).toBeGreaterThan(3_000)
      expect(JSON.parse(slow.body)).toEqual({
        length: chunks.reduce((n, c) => n + c.length, 0),
        sha: Crypto.createHash("sha256").update(Buffer.concat(chunks)).digest("hex")
      })
      // A body that stops coming: the exchange is cut after the link's idle timeout, not held for ever.
      const stalled = yield* send(hub.port, `${link.path}/upload`, { chunks: [Buffer.alloc(10)], hold: true })
      expect(stalled.ms).toBeGreaterThan(1_500)
      expect(stalled.ms).toBeLessThan(10_000)
      expect(stalled.status === 0 || stalled.status >= 500).toBe(true)
      // The API keeps its deadline: a slow body there is cut after a second.
      const api = yield* send(hub.port, "/v1/links", {
        chunks: [Buffer.from("{"), Buffer.from(" ")],
        everyMs: 3_000,
        headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" }
      })
      expect(api.status).toBe(0)
      expect(api.ms).toBeLessThan(2_900)
    }), 120_000)

  it.scopedLive("a POST reaches the service once, even when its kept-alive connection dies under it; a GET is sent again", () =>
    Effect.gen(function*() {
      const { hub, apiKey, service } = yield* world()
      const link = yield* createLink(hub, apiKey, { methods: ["GET", "POST"] })
      const agent = new Http.Agent({ keepAlive: true, maxSockets: 1 })
      yield* Effect.addFinalizer(() => Effect.sync(() => agent.destroy()))
      // Warm the link's pool: the next requests go on a connection the hub reuses.
      expect((yield* send(hub.port, `${link.path}/warm`, { agent })).status).toBe(200)
      const post = yield* send(hub.port, `${link.path}/drop`, { method: "POST", agent })
      expect(post.status).toBe(502)
      expect(service.seen.filter((s) => s === "POST /drop")).toHaveLength(1)
      expect((yield* send(hub.port, `${link.path}/warm`, { agent })).status).toBe(200)
      const get = yield* send(hub.port, `${link.path}/drop`, { agent })
      expect(get.status).toBe(502)
      expect(service.seen.filter((s) => s === "GET /drop")).toHaveLength(2)
      // Both answered and recorded as the service's failure.
      yield* waitForEvents(hub, (events) => {
        const failed = events.filter((e) => e._tag === "LinkAccessed" && e.reason === "upstream_error")
        return failed.reduce((n: number, e: any) => n + (e.count ?? 1), 0) === 2 ? failed : undefined
      })
    }), 60_000)
})

describe("public links while the log is unavailable", () => {
  it.scopedLive("answer 503 while Postgres is cut or stalled, and serve again once it is back", () =>
    Effect.gen(function*() {
      const url = new URL(yield* TestDatabase.makeTestDatabaseUrl)
      const proxy = yield* TcpProxy.start(url.hostname, Number(url.port || 5432))
      url.hostname = "127.0.0.1"
      url.port = String(proxy.port)
      const { hub, apiKey } = yield* world({ databaseUrl: url.toString() })
      const served = yield* createLink(hub, apiKey)
      const untried = yield* createLink(hub, apiKey)
      expect((yield* send(hub.port, `${served.path}/x`)).status).toBe(200)

      // Stalled: a link the hub has not looked up yet cannot be; the request is a 503 after the lookup's deadline.
      proxy.stall()
      const stalled = yield* send(hub.port, `${untried.path}/x`)
      expect(stalled.status).toBe(503)
      expect(stalled.ms).toBeLessThan(15_000)
      proxy.restore()

      // Cut: the next requests' records cannot be appended; once they are spooled, every request is a 503.
      proxy.cut()
      const during: Array<number> = []
      const deadline = Date.now() + 20_000
      while (Date.now() < deadline && during.at(-1) !== 503) {
        during.push((yield* send(hub.port, `${served.path}/x`)).status)
        yield* Effect.sleep("200 millis")
      }
      expect(during.at(-1)).toBe(503)
      expect(JSON.parse((yield* send(hub.port, `${served.path}/x`)).body).error.code).toBe("Unavailable")
      proxy.restore()
      // Back: the spool is replayed and requests are served again; the spooled records are on the log.
      let after = 0
      for (let i = 0; i < 100 && after !== 200; i++) {
        yield* Effect.sleep("300 millis")
        after = (yield* send(hub.port, `${served.path}/x`)).status
      }
      expect(after).toBe(200)
      const allowed = during.filter((s) => s === 200).length
      yield* waitForEvents(hub, (events) =>
        events.filter((e) => e._tag === "LinkAccessed" && e.outcome === "allowed").length >= allowed + 2 ? true : undefined)
    }), 120_000)
})

describe("public links against strangers", () => {
  it.scopedLive("a token that matches no link is a 404 on the record, coalesced per address; past its lookups, a 429", () =>
    Effect.gen(function*() {
      // Behind a trusted proxy: the stranger and an honest client are two addresses.
      const { hub, apiKey } = yield* world({ config: { trustProxy: ["127.0.0.1/32"] } })
      const stranger = { "x-forwarded-for": "198.51.100.7" }
      const link = yield* createLink(hub, apiKey)
      const token = link.path.slice("/l/".length)
      const statuses: Record<number, number> = {}
      const started = Date.now()
      for (let i = 0; i < 200; i++) {
        const answer = yield* send(hub.port, `/l/${Crypto.randomBytes(20).toString("hex")}/x`, { headers: stranger })
        statuses[answer.status] = (statuses[answer.status] ?? 0) + 1
      }
      expect((yield* send(hub.port, "/l/not-a-token/x", { headers: stranger })).status).toBe(404)
      // 120 lookups at once, one more every 500 ms while it tried, then 429 without one.
      expect(statuses[404]).toBeGreaterThanOrEqual(120)
      expect(statuses[404]).toBeLessThanOrEqual(121 + Math.ceil((Date.now() - started) / 500))
      expect(statuses[429]).toBe(200 - statuses[404]!)
      // Another address is not held back by the stranger's guesses.
      expect((yield* send(hub.port, `${link.path}/x`, { headers: { "x-forwarded-for": "203.0.113.9" } })).status).toBe(200)
      const refused = yield* waitForEvents(hub, (events) => {
        const found = events.filter((e) => e._tag === "LinkAccessed" && e.linkId === undefined)
        return found.reduce((n: number, e: any) => n + (e.count ?? 1), 0) === 201 ? found : undefined
      })
      // A handful of events stand for 201 refusals, in no workspace, with no token in them.
      expect(refused.length).toBeLessThanOrEqual(8)
      for (const e of refused) {
        expect(e._stream).toBe("link-unknown")
        expect(e._workspaceId).toBeNull()
        expect(["unknown_token", "rate_limited"]).toContain(e.reason)
        expect(e).toMatchObject({ outcome: "denied", ip: "198.51.100.7", path: "/x" })
      }
      expect(JSON.stringify(yield* hub.events)).not.toContain(token)
    }), 120_000)
})

describe("public links: strangers' bodies", () => {
  it.scopedLive("a refused request (unknown token) is answered and its connection closed: a dribbled body holds nothing", () =>
    Effect.gen(function*() {
      const { hub } = yield* world()
      const outcome = yield* Effect.async<{ answer: string; closedAfterMs: number | undefined }>((resume) => {
        const socket = Net.connect({ port: hub.port, host: "127.0.0.1" })
        let answer = ""
        const started = Date.now()
        let timer: ReturnType<typeof setInterval> | undefined
        socket.on("connect", () => {
          socket.write(`POST /l/${Crypto.randomBytes(20).toString("hex")}/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n\r\nx`)
          // One byte every 300 ms: before, the hub answered 404 and went on reading the body for as long as it came.
          timer = setInterval(() => socket.write("x"), 300)
        })
        socket.on("data", (chunk: Buffer) => (answer += chunk.toString()))
        socket.on("error", () => {})
        socket.on("close", () => {
          clearInterval(timer)
          resume(Effect.succeed({ answer, closedAfterMs: Date.now() - started }))
        })
        const giveUp = setTimeout(() => {
          clearInterval(timer)
          socket.destroy()
          resume(Effect.succeed({ answer, closedAfterMs: undefined }))
        }, 10_000)
        giveUp.unref()
        return Effect.sync(() => {
          clearInterval(timer)
          clearTimeout(giveUp)
          socket.destroy()
        })
      })
      expect(outcome.answer).toMatch(/^HTTP\/1\.1 404 /)
      expect(outcome.answer.toLowerCase()).toContain("connection: close")
      expect(outcome.closedAfterMs).toBeDefined()
      expect(outcome.closedAfterMs!).toBeLessThan(5_000)
    }), 60_000)
})

describe("public links across hubs", () => {
  it.scopedLive("a link revoked through another hub on the same database is refused at once, not when the copy expires", () =>
    Effect.gen(function*() {
      const databaseUrl = yield* TestDatabase.makeTestDatabaseUrl
      const { hub, apiKey } = yield* world({ databaseUrl })
      const other = yield* Hub.start({ databaseUrl })
      const link = yield* createLink(hub, apiKey)
      // The serving hub now holds a copy of the link (5 s).
      expect((yield* send(hub.port, `${link.path}/x`)).status).toBe(200)
      const revoked = yield* other.http("POST", `/v1/links/${link.linkId}/revoke`, apiKey)
      expect(revoked.status).toBe(200)
      const since = Date.now()
      let status = 0
      while (status !== 410 && Date.now() - since < 2_000) {
        status = (yield* send(hub.port, `${link.path}/x`)).status
        if (status !== 410) yield* Effect.sleep("50 millis")
      }
      expect(status).toBe(410)
    }), 120_000)
})
