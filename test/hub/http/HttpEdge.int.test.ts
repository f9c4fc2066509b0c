/**
 * The hub's HTTP port as a hostile client meets it, over real sockets on 127.0.0.1: slow clients are cut, one address
 * cannot hold more than its share of connections, oversized or malformed requests get JSON 4xx answers, text a peer
 * supplies for the record is sanitised, `--trust-proxy` decides which address is recorded, and TLS refuses weak suites.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Tls from "node:tls"
import * as HttpServer from "@effect/platform/HttpServer"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import WebSocket from "ws"
import { EventLog } from "../../../core/EventLog.ts"
import * as Admin from "../../../hub/commands/Admin.ts"
import * as HubConfig from "../../../hub/HubConfig.ts"
import * as Main from "../../../hub/Main.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"

interface EdgeHub {
  readonly port: number
  readonly apiKey: string
  readonly events: Effect.Effect<ReadonlyArray<{ readonly event: any; readonly meta: any }>>
}

/** A hub in this process on port 0 with `overrides` of its configuration, and one workspace's API key. */
const startHub = (overrides: Partial<HubConfig.HubConfigShape> = {}) =>
  Effect.gen(function*() {
    const databaseUrl = yield* TestDatabase.makeTestDatabaseUrl
    const dataDir = yield* Effect.acquireRelease(
      Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-edge-"))),
      (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
    )
    const context = yield* Layer.build(
      Main.HubLive({ host: "127.0.0.1", port: 0, dataDir, databaseUrl, ...overrides })
    ).pipe(Effect.orDie)
    const address = Context.get(context, HttpServer.HttpServer).address
    const workspace = yield* Admin.createWorkspace("edge").pipe(Effect.provide(context), Effect.orDie)
    const events = Effect.flatMap(EventLog, (log) => log.readAll(0, 100_000)).pipe(
      Effect.map((all) => all.map((e) => ({ event: e.event, meta: JSON.parse(e.metaJson) }))),
      Effect.provide(context),
      Effect.orDie
    )
    return {
      port: address._tag === "TcpAddress" ? address.port : 0,
      apiKey: workspace.apiKey.key,
      events
    } satisfies EdgeHub
  })

/** What a raw TCP client saw: the bytes the server sent, and how long until the server closed the connection. */
interface RawResult {
  readonly text: string
  readonly closedAfterMs: number
}

/**
 * Connects to 127.0.0.1:`port`, writes `chunks` (one every `everyMs`, stopping once the server closes), and resolves
 * when the server closes the connection, or after `maxMs` with `closedAfterMs: Infinity`.
 */
const raw = (port: number, chunks: ReadonlyArray<string | Buffer>, everyMs = 0, maxMs = 15_000) =>
  Effect.async<RawResult>((resume) => {
    const started = Date.now()
    const socket = Net.connect({ port, host: "127.0.0.1" })
    const received: Array<Buffer> = []
    let timer: NodeJS.Timeout | undefined
    let done = false
    const finish = (closedAfterMs: number) => {
      if (done) return
      done = true
      clearTimeout(timer)
      clearTimeout(deadline)
      socket.destroy()
      resume(Effect.succeed({ text: Buffer.concat(received).toString("latin1"), closedAfterMs }))
    }
    const deadline = setTimeout(() => finish(Infinity), maxMs)
    socket.on("data", (c: Buffer) => received.push(c))
    socket.on("error", () => {})
    socket.on("close", () => finish(Date.now() - started))
    let i = 0
    const next = () => {
      if (done || i >= chunks.length) return
      socket.write(chunks[i++]!)
      timer = setTimeout(next, everyMs)
    }
    socket.once("connect", next)
    return Effect.sync(() => finish(Infinity))
  })

/** The status line's code and the JSON body of a raw HTTP/1.1 response. */
const parse = (text: string) => {
  const status = Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1] ?? 0)
  const bodyAt = text.indexOf("\r\n\r\n")
  const head = text.slice(0, bodyAt)
  let body = text.slice(bodyAt + 4)
  // A chunked body: one chunk is enough for these small answers.
  if (/transfer-encoding: chunked/i.test(head)) body = body.slice(body.indexOf("\r\n") + 2, body.lastIndexOf("\r\n0\r\n"))
  let json: unknown
  try {
    json = JSON.parse(body)
  } catch {
    json = body
  }
  return { status, head, body: json as any }
}

const request = (port: number, method: string, path: string, headers: Record<string, string> = {}, body?: string) =>
  Effect.map(
    raw(port, [
      `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n` +
        Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join("") +
        (body === undefined ? "" : `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n`) +
        "\r\n" + (body ?? "")
    ]),
    (r) => parse(r.text)
  )

const jsonError = (status: number, code: string) => ({ status, body: { error: { code, message: expect.any(String) } } })

describe("the hub's HTTP edge", () => {
  it.scopedLive("cuts a client that sends its headers a byte a second, one that trickles its body, and one that sends nothing, within the timeout", () =>
    Effect.gen(function*() {
      const hub = yield* startHub({ limits: { ...HubConfig.DEFAULT_LIMITS, headersTimeout: "1 second", requestTimeout: "1 second" } })
      const headers = [..."GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + "a".repeat(40)]
      const slowHeaders = yield* raw(hub.port, headers, 1_000, 10_000)
      expect(slowHeaders.closedAfterMs).toBeLessThan(3_000)
      expect(parse(slowHeaders.text)).toMatchObject(jsonError(408, "RequestTimeout"))

      const start = `POST /v1/agents HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${hub.apiKey}\r\n` +
        "Content-Type: application/json\r\nContent-Length: 40\r\n\r\n"
      const slowBody = yield* raw(hub.port, [start, ...`{"label":"${"x".repeat(26)}"}`], 1_000, 10_000)
      expect(slowBody.closedAfterMs).toBeLessThan(3_000)
      // A client that connects and sends nothing at all is cut as well, while an agent's WebSocket, upgraded in time,
      // outlives the timeout.
      let agentClosed = false
      yield* Effect.acquireRelease(
        Effect.async<WebSocket>((resume) => {
          const socket = new WebSocket(`ws://127.0.0.1:${hub.port}/v1/agent`, "connect.ws.v1", { perMessageDeflate: false })
          socket.once("open", () => resume(Effect.succeed(socket)))
          socket.once("close", () => (agentClosed = true))
          socket.once("error", (e) => resume(Effect.die(e)))
        }),
        (socket) => Effect.sync(() => socket.terminate())
      )
      const silent = yield* raw(hub.port, [], 1_000, 10_000)
      expect(silent.closedAfterMs).toBeLessThan(3_000)
      expect(agentClosed).toBe(false)
      // Nothing was provisioned from a request that never arrived whole.
      expect((yield* hub.events).filter((e) => e.event._tag === "AgentProvisioned")).toEqual([])
    }), 60_000)

  it.scopedLive("holds at most 256 connections from one address: the 257th and later are closed at once", () =>
    Effect.gen(function*() {
      const hub = yield* startHub()
      const sockets = yield* Effect.acquireRelease(
        Effect.promise(() =>
          Promise.all(Array.from({ length: 300 }, () =>
            new Promise<{ socket: Net.Socket; closed: () => boolean }>((resolve) => {
              let closed = false
              const socket = Net.connect({ port: hub.port, host: "127.0.0.1" })
              socket.on("error", () => {})
              socket.on("close", () => (closed = true))
              socket.once("connect", () => resolve({ socket, closed: () => closed }))
            })))
        ),
        (all) => Effect.sync(() => all.forEach((s) => s.socket.destroy()))
      )
      yield* Effect.sleep("1 second")
      expect(sockets.filter((s) => s.closed()).length).toBe(44)
      // Once one closes, the address may open another, and an honest request on it is answered.
      sockets.find((s) => !s.closed())!.socket.destroy()
      yield* Effect.sleep("200 millis")
      expect(yield* request(hub.port, "GET", "/health")).toMatchObject({ status: 200, body: { status: "ok" } })
    }), 60_000)

  it.scopedLive("answers every 4xx with a JSON error: 404, 405, 413, 431, and 400 for a label with U+0000 or a lone surrogate", () =>
    Effect.gen(function*() {
      const hub = yield* startHub()
      const auth = { Authorization: `Bearer ${hub.apiKey}` }
      expect(yield* request(hub.port, "GET", "/nothing-here")).toMatchObject(jsonError(404, "NotFound"))
      expect(yield* request(hub.port, "GET", "/v1/nothing-here", auth)).toMatchObject(jsonError(404, "NotFound"))
      const wrongMethod = yield* request(hub.port, "DELETE", "/v1/agents", auth)
      expect(wrongMethod).toMatchObject(jsonError(405, "MethodNotAllowed"))
      expect(wrongMethod.head).toMatch(/\r\nallow: GET, POST/i)
      expect(yield* request(hub.port, "POST", "/health")).toMatchObject(jsonError(405, "MethodNotAllowed"))
      expect(yield* request(hub.port, "PUT", "/v1/services", auth, "{}")).toMatchObject(jsonError(405, "MethodNotAllowed"))

      const big = JSON.stringify({ label: "x".repeat(100_000) })
      expect(yield* request(hub.port, "POST", "/v1/agents", auth, big)).toMatchObject(jsonError(413, "BodyTooLarge"))
      // The same without a Content-Length (chunked) is cut at the limit too.
      const chunked = yield* raw(hub.port, [
        `POST /v1/agents HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${hub.apiKey}\r\nConnection: close\r\n` +
          `Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n${big.length.toString(16)}\r\n${big}\r\n0\r\n\r\n`
      ])
      expect(parse(chunked.text)).toMatchObject(jsonError(413, "BodyTooLarge"))

      const hugeHeader = yield* request(hub.port, "GET", "/v1/agents", { ...auth, "X-Big": "y".repeat(64 * 1024) })
      expect(hugeHeader).toMatchObject(jsonError(431, "HeadersTooLarge"))

      for (const label of ["a\u0000b", "a\ud800b", "\udc00"]) {
        expect(yield* request(hub.port, "POST", "/v1/agents", auth, JSON.stringify({ label }))).toMatchObject(
          jsonError(400, "BadRequest")
        )
      }
      expect((yield* hub.events).filter((e) => e.event._tag === "AgentProvisioned")).toEqual([])
    }), 60_000)

  it.scopedLive("records a user agent sanitised and capped, never refusing the request for it", () =>
    Effect.gen(function*() {
      const hub = yield* startHub()
      const userAgent = "agent/1.0 " + "z".repeat(5_000)
      const created = yield* request(hub.port, "POST", "/v1/agents", {
        Authorization: `Bearer ${hub.apiKey}`,
        "User-Agent": userAgent
      }, JSON.stringify({ label: "laptop" }))
      expect(created.status).toBe(201)
      const provisioned = (yield* hub.events).find((e) => e.event._tag === "AgentProvisioned")!
      expect(Array.from(provisioned.meta.userAgent as string)).toHaveLength(128)
      expect(provisioned.meta.userAgent.startsWith("agent/1.0 zzz")).toBe(true)
    }), 60_000)

  it.scopedLive("--trust-proxy: X-Forwarded-For is believed only from a trusted peer, walked from the right", () =>
    Effect.gen(function*() {
      const provisionedFrom = (hub: EdgeHub, xff: string) =>
        Effect.gen(function*() {
          const created = yield* request(hub.port, "POST", "/v1/agents", {
            Authorization: `Bearer ${hub.apiKey}`,
            "X-Forwarded-For": xff
          }, "{}")
          expect(created.status).toBe(201)
          const all = (yield* hub.events).filter((e) => e.event._tag === "AgentProvisioned")
          return all[all.length - 1]!.meta.sourceIp as string
        })
      const trusting = yield* startHub({ trustProxy: ["127.0.0.0/8", "10.0.0.0/8"] })
      expect(yield* provisionedFrom(trusting, "203.0.113.9")).toBe("203.0.113.9")
      // A client's own forged entries are to the left of what the trusted proxies appended.
      expect(yield* provisionedFrom(trusting, "198.51.100.1, 203.0.113.9, 10.1.2.3")).toBe("203.0.113.9")
      expect(yield* provisionedFrom(trusting, "not-an-ip")).toBe("127.0.0.1")

      const untrusting = yield* startHub({ trustProxy: ["10.0.0.0/8"] })
      expect(yield* provisionedFrom(untrusting, "203.0.113.9")).toBe("127.0.0.1")
      const plain = yield* startHub()
      expect(yield* provisionedFrom(plain, "203.0.113.9")).toBe("127.0.0.1")

      // The agent gateway records the same address for an agent behind the proxy.
      const ws = yield* Effect.acquireRelease(
        Effect.async<WebSocket>((resume) => {
          const socket = new WebSocket(`ws://127.0.0.1:${trusting.port}/v1/agent`, "connect.ws.v1", {
            headers: { "X-Forwarded-For": "192.0.2.77" },
            perMessageDeflate: false
          })
          socket.once("open", () => resume(Effect.succeed(socket)))
          socket.once("error", (e) => resume(Effect.die(e)))
        }),
        (socket) => Effect.sync(() => socket.terminate())
      )
      ws.send(JSON.stringify({ _tag: "Hello", protocol: 1, token: "0".repeat(64), transport: "ws", agentVersion: "test" }))
      const deadline = Date.now() + 10_000
      let failed: any
      while (failed === undefined && Date.now() < deadline) {
        failed = (yield* trusting.events).find((e) => e.event._tag === "AgentAuthFailed")
        if (failed === undefined) yield* Effect.sleep("50 millis")
      }
      expect(failed?.event).toMatchObject({ ip: "192.0.2.77" })
    }), 90_000)

  it.scopedLive("TLS: refuses CBC-SHA1 and non-forward-secret suites and TLS 1.1; accepts ECDHE with AES-GCM", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-edge-tls-"))),
        (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
      )
      // An RSA certificate: with it the server could negotiate RSA key exchange (AES128-SHA, AES128-GCM-SHA256).
      ChildProcess.execFileSync("openssl", [
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
        "-keyout", Path.join(dir, "key.pem"), "-out", Path.join(dir, "cert.pem")
      ], { stdio: "ignore" })
      const tls = yield* HubConfig.readTls(Path.join(dir, "cert.pem"), Path.join(dir, "key.pem"))
      const hub = yield* startHub({ tls })
      const handshake = (options: Tls.ConnectionOptions) =>
        Effect.async<string>((resume) => {
          const socket = Tls.connect({ host: "127.0.0.1", port: hub.port, rejectUnauthorized: false, ...options })
          socket.once("secureConnect", () => {
            resume(Effect.succeed(`${socket.getProtocol()} ${socket.getCipher().name}`))
            socket.destroy()
          })
          socket.once("error", () => resume(Effect.succeed("refused")))
        })
      const tls12 = { maxVersion: "TLSv1.2" } as const
      expect(yield* handshake({ ...tls12, ciphers: "AES128-SHA" })).toBe("refused")
      expect(yield* handshake({ ...tls12, ciphers: "AES128-GCM-SHA256" })).toBe("refused")
      expect(yield* handshake({ ...tls12, ciphers: "ECDHE-RSA-AES128-SHA" })).toBe("refused")
      expect(yield* handshake({ ...tls12, ciphers: "ECDHE-RSA-AES128-SHA256" })).toBe("refused")
      expect(yield* handshake({ minVersion: "TLSv1.1", maxVersion: "TLSv1.1", ciphers: "DEFAULT:@SECLEVEL=0" })).toBe("refused")
      expect(yield* handshake({ ...tls12, ciphers: "ECDHE-RSA-AES128-GCM-SHA256" })).toBe("TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256")
      expect(yield* handshake({})).toMatch(/^TLSv1\.3 TLS_/)
    }), 60_000)
})
