/**
 * A public link's world for hub tests: a real HTTP service (answering each request with its body's length and SHA-256,
 * or cutting `/drop`), a hub with an agent exposing it as `web`, links onto it, and requests to the hub with chosen
 * bodies, pacing and connection pooling.
 */
import * as Crypto from "node:crypto"
import * as Http from "node:http"
import * as Net from "node:net"
import { expect } from "@effect/vitest"
import { Effect } from "effect"
import type { Scope } from "effect"
import * as HubClient from "../../agent/HubClient.ts"
import type { HubConfigShape } from "../../hub/HubConfig.ts"
import * as Msgpack from "../../transports/Msgpack.ts"
import * as Hub from "./Hub.ts"

/** What the service saw: requests by method and path, in order. */
export interface Service {
  readonly port: number
  readonly seen: Array<string>
}

/**
 * The service behind the links: `/drop` reads the request and destroys its connection without answering, anything
 * else answers with the body's length and SHA-256.
 */
export const startService: Effect.Effect<Service, never, Scope.Scope> = Effect.acquireRelease(
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
export const world = (options: { readonly databaseUrl?: string; readonly config?: Partial<HubConfigShape> } = {}) =>
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
export const createLink = (hub: Hub.TestHub, apiKey: string, body: Record<string, unknown> = {}) =>
  Effect.map(hub.http("POST", "/v1/links", apiKey, { service: "web", rateLimit: "100000/min", ...body }), (r) => {
    expect(r.status).toBe(201)
    return { path: new URL(r.body.url).pathname.replace(/\/$/, ""), linkId: r.body.linkId as string }
  })

export interface Answer {
  readonly status: number
  readonly body: string
  readonly ms: number
}

/**
 * One request to the hub on `agent` (a keep-alive pool, or none); `chunks` are written one every `everyMs`, and the
 * request ends after the last unless `hold`. An error (the connection cut) is status 0.
 */
export const send = (
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
