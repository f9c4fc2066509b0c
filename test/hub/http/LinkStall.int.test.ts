/**
 * A link already in the hub's cache while the event log stalls (another session holds the append lock; no lookup is
 * needed, so its 5 s deadline does not apply): the hub fails closed (503) within a few seconds, once an append of the
 * records of what it served has waited LinkGroups.STALL_MS, instead of serving on with those records in memory only
 * (found in review: it served for 40 s, 1,100-1,300 requests, until the first append gave up). Once the lock is free,
 * every request served is on the log.
 */
import * as Crypto from "node:crypto"
import * as Http from "node:http"
import * as Net from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import type { Scope } from "effect"
import Pg from "pg"
import * as HubClient from "../../../agent/HubClient.ts"
import type { HubConfigShape } from "../../../hub/HubConfig.ts"
import * as PgEventLog from "../../../hub/eventlog/PgEventLog.ts"
import * as Msgpack from "../../../transports/Msgpack.ts"
import * as Hub from "../../support/Hub.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"

/** What the service saw: requests by method and path, in order. */
interface Service {
  readonly port: number
  readonly seen: Array<string>
}

/**
 * The service behind the links: `/drop` reads the request and destroys its connection without answering, anything
 * else answers with the body's length and SHA-256.
 */
const startService: Effect.Effect<Service, never, Scope.Scope> = Effect.acquireRelease(
  Effect.async<{ server: Http.Server; service: Service }>((resume) => {
    const seen: Array<string> = []
    const server = Http.createServer((request, response) => {
      seen.push(`${request.method} ${request.url}`)
      const hash = Crypto.createHash("sha256")
      let length = 0
      request.on("data", (chunk: Buffer) => {
        hash.update(chunk)
        length += chunk.length
      })
      request.on("end", () => {
        if (request.url === "/drop") return request.socket.destroy()
        response.writeHead(200, { "content-type": "application/json" })
        response.end(JSON.stringify({ length, sha: hash.digest("hex") }))
      })
    })
    server.keepAliveTimeout = 60_000
    server.listen(0, "127.0.0.1", () =>
      resume(Effect.succeed({ server, service: { port: (server.address() as Net.AddressInfo).port, seen } })))
  }),
  ({ server }) => Effect.async<void>((resume) => {
    server.closeAllConnections()
    server.close(() => resume(Effect.void))
  })
).pipe(Effect.map(({ service }) => service))

/** A hub with an agent exposing the service as `web`, and a workspace key. */
const world = (options: { readonly databaseUrl?: string; readonly config?: Partial<HubConfigShape> } = {}) =>
  Effect.gen(function*() {
    const hub = yield* Hub.start(options)
    const { apiKey, workspaceId } = yield* hub.workspace("links")
    const agent = (yield* hub.http("POST", "/v1/agents", apiKey, { label: "exposer" })).body
    const client = yield* HubClient.connect({ url: hub.agentUrl, transport: Msgpack.transport, token: agent.token })
    const service = yield* startService
    yield* client.expose("web", "127.0.0.1", service.port)
    return { hub, apiKey, workspaceId, service }
  })

/** A link onto `web`; its path on the hub (`/l/TOKEN`) and id. */
const createLink = (hub: Hub.TestHub, apiKey: string, body: Record<string, unknown> = {}) =>
  Effect.map(hub.http("POST", "/v1/links", apiKey, { service: "web", rateLimit: "100000/min", ...body }), (r) => {
    expect(r.status).toBe(201)
    return { path: new URL(r.body.url).pathname.replace(/\/$/, ""), linkId: r.body.linkId as string }
  })

interface Answer {
  readonly status: number
  readonly body: string
  readonly ms: number
}

/**
 * One request to the hub on `agent` (a keep-alive pool, or none); `chunks` are written one every `everyMs`, and the
 * request ends after the last unless `hold`. An error (the connection cut) is status 0.
 */
const send = (
  port: number,
  path: string,
  options: {
    readonly method?: string
    readonly chunks?: ReadonlyArray<Buffer>
    readonly everyMs?: number
    readonly hold?: boolean
    readonly agent?: Http.Agent
    readonly headers?: Record<string, string>
  } = {}
) =>
  Effect.async<Answer>((resume) => {
    const started = Date.now()
    const chunks = options.chunks ?? []
    const length = chunks.reduce((n, c) => n + c.length, 0)
    const request = Http.request({
      host: "127.0.0.1",
      port,
      path,
      method: options.method ?? (chunks.length ? "POST" : "GET"),
      agent: options.agent ?? false,
      headers: { ...(chunks.length ? { "content-length": String(options.hold ? length + 1_000 : length) } : {}), ...options.headers }
    }, (response) => {
      const parts: Array<Buffer> = []
      response.on("data", (c: Buffer) => parts.push(c))
      response.on("end", () => resume(Effect.succeed({ status: response.statusCode ?? 0, body: Buffer.concat(parts).toString(), ms: Date.now() - started })))
      response.on("error", () => resume(Effect.succeed({ status: 0, body: "", ms: Date.now() - started })))
    })
    request.on("error", () => resume(Effect.succeed({ status: 0, body: "", ms: Date.now() - started })))
    let i = 0
    const next = () => {
      if (request.destroyed) return
      if (i < chunks.length) {
        request.write(chunks[i++])
        timer = setTimeout(next, options.everyMs ?? 0)
      } else if (!options.hold) request.end()
    }
    let timer = setTimeout(next, 0)
    return Effect.sync(() => {
      clearTimeout(timer)
      request.destroy()
    })
  }).pipe(Effect.timeout("60 seconds"), Effect.orDie)


describe("a cached link while the log stalls", () => {
  it.scopedLive("is answered 503 within 5 s of the log stalling, and every request it served reaches the log", () =>
    Effect.gen(function*() {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      const { hub, apiKey } = yield* world({ databaseUrl: url })
      const link = yield* createLink(hub, apiKey)
      const pool = new Http.Agent({ keepAlive: true, maxSockets: 1 })
      expect((yield* send(hub.port, `${link.path}/warm`, { agent: pool })).status).toBe(200)
      const holder = new Pg.Client({ connectionString: url })
      yield* Effect.acquireRelease(Effect.promise(() => holder.connect()), () => Effect.promise(() => holder.end()))
      yield* Effect.promise(() => holder.query(`select pg_advisory_lock($1)`, [PgEventLog.APPEND_LOCK_KEY]))
      const stalledAt = Date.now()
      const statuses: Array<number> = []
      let first503 = -1
      while (Date.now() - stalledAt < 20_000) {
        const answer = yield* send(hub.port, `${link.path}/r${statuses.length}`, { agent: pool })
        statuses.push(answer.status)
        if (answer.status === 503) {
          first503 = Date.now() - stalledAt
          break
        }
        yield* Effect.sleep("20 millis")
      }
      yield* Effect.promise(() => holder.query(`select pg_advisory_unlock($1)`, [PgEventLog.APPEND_LOCK_KEY]))
      pool.destroy()
      const served = statuses.filter((s) => s === 200).length
      // Once the lock is free, every served request reaches the log (nothing lost without a crash).
      const unlockedAt = Date.now()
      const count = () => Effect.map(hub.events, (events) => events.filter((e) => e.event._tag === "LinkAccessed" && (e.event as { outcome?: string }).outcome === "allowed").length)
      let recorded = yield* count()
      while (recorded < served + 1 && Date.now() - unlockedAt < 90_000) {
        yield* Effect.sleep("1 second")
        recorded = yield* count()
      }
      expect(first503).toBeGreaterThanOrEqual(0)
      expect(first503).toBeLessThan(5_000)
      expect(recorded).toBe(served + 1)
    }), 240_000)
})
