/**
 * Public links end to end, as real processes: a hub (`--link-domain links.test`), an agent exposing a real node HTTP
 * server of this test, links made with `connect link create`, and requests through `/l/TOKEN/` and `TOKEN.links.test`:
 * JSON, form, multipart and a 50 MiB binary body byte-exact, sub-paths and queries, a chunked answer with trailers, a
 * WebSocket echo, hop-by-hop headers dropped and X-Forwarded-* set; every path escape refused (400/403) without reaching
 * the service; 429 past the rate; 410 right after revoke and after expiry; every use, allowed or denied, on the log.
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Http from "node:http"
import type * as Net from "node:net"
import * as Path from "node:path"
import pg from "pg"
import { WebSocket, WebSocketServer } from "ws"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as AgentWorld from "../support/AgentWorld.ts"
import { track } from "../support/processes.ts"

const world = AgentWorld.make("links")
const { connect, detachedPids, dir } = world

/** Runs a short `connect` command to its end; the machine is shared, so a CLI start may take most of a minute. */
const command = async (home: string, args: ReadonlyArray<string>, extra: NodeJS.ProcessEnv = {}) => {
  const cli = connect(home, args, extra)
  const exit = await cli.exited(240_000)
  return { code: exit.code, stdout: cli.stdout(), stderr: cli.stderr() }
}

const sha = (data: Buffer) => Crypto.createHash("sha256").update(data).digest("hex")

/** What the service saw, by path. */
const seen: Array<{ method: string; url: string; headers: Http.IncomingHttpHeaders }> = []
let service: Http.Server
let servicePort = 0
let hubPort = 0
let hub: ReturnType<typeof connect>
let apiKey = ""
let agentPid = 0
const tokens: Record<string, string> = {}
const ids: Record<string, string> = {}

/** The service: echoes what it received (hash and length of the body), a chunked answer with trailers, a WebSocket echo. */
const startService = () =>
  new Promise<void>((resolve) => {
    service = Http.createServer((request, response) => {
      seen.push({ method: request.method ?? "", url: request.url ?? "", headers: request.headers })
      if (request.url?.startsWith("/api/v1/chunked")) {
        response.writeHead(200, { "content-type": "text/plain", trailer: "x-checksum" })
        let i = 0
        const timer = setInterval(() => {
          response.write(`chunk ${i}\n`)
          if (++i === 5) {
            clearInterval(timer)
            response.addTrailers({ "x-checksum": "five" })
            response.end()
          }
        }, 20)
        return
      }
      const hash = Crypto.createHash("sha256")
      let length = 0
      request.on("data", (chunk: Buffer) => {
        hash.update(chunk)
        length += chunk.length
      })
      request.on("end", () => {
        response.writeHead(200, { "content-type": "application/json", "x-service": "yes" })
        response.end(JSON.stringify({
          method: request.method,
          url: request.url,
          headers: request.headers,
          sha: hash.digest("hex"),
          length
        }))
      })
    })
    const wss = new WebSocketServer({ server: service, perMessageDeflate: false })
    wss.on("connection", (socket) => socket.on("message", (data, binary) => socket.send(data, { binary })))
    service.listen(0, "127.0.0.1", () => {
      servicePort = (service.address() as Net.AddressInfo).port
      resolve()
    })
  })

/** One request to the hub; the answer's status, headers, body and trailers. */
const request = (
  path: string,
  options: { method?: string; headers?: Record<string, string>; body?: Buffer | string } = {}
) =>
  new Promise<{ status: number; headers: Http.IncomingHttpHeaders; body: Buffer; trailers: NodeJS.Dict<string> }>(
    (resolve, reject) => {
      const req = Http.request({
        host: "127.0.0.1",
        port: hubPort,
        path,
        method: options.method ?? "GET",
        headers: options.headers ?? {},
        agent: false
      }, (res) => {
        const chunks: Array<Buffer> = []
        res.on("data", (c: Buffer) => chunks.push(c))
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), trailers: res.trailers }))
        res.on("error", reject)
      })
      req.setTimeout(120_000, () => req.destroy(new Error("timeout")))
      req.on("error", reject)
      req.end(options.body)
    }
  )

const json = (body: Buffer) => JSON.parse(body.toString("utf8"))

const createLink = async (name: string, args: ReadonlyArray<string>) => {
  const made = await command(dir(`cli-${name}`), ["link", "create", "web", "--hub", `http://127.0.0.1:${hubPort}`, "--json", ...args], {
    CONNECT_API_KEY: apiKey
  })
  expect(made.stderr).toBe("")
  expect(made.code).toBe(0)
  const link = JSON.parse(made.stdout)
  tokens[name] = link.token
  ids[name] = link.linkId
  return link
}

/** Every event of the log, in order. */
const events = async () => {
  const client = new pg.Client({ connectionString: world.databaseUrl() })
  await client.connect()
  try {
    const { rows } = await client.query(`select type, data, meta from events order by position`)
    return rows as Array<{ type: string; data: any; meta: any }>
  } finally {
    await client.end()
  }
}

beforeAll(async () => {
  await startService()
  const hubHome = dir("hub")
  // Refusals coalesced per 2 s instead of 10 s: their last window is on the log 8 s sooner (see the log's test below).
  hub = connect(hubHome, ["hub", "--port", "0", "--link-domain", "links.test", "--denial-window", "2s"], { DATABASE_URL: world.databaseUrl() })
  hubPort = Number((await hub.waitFor(AgentWorld.LISTENING, 300_000))[2])
  apiKey = (await hub.waitFor(AgentWorld.API_KEY, 5_000))[1]!
  const home = dir("agent")
  const up = await command(home, ["up", "--hub", `http://127.0.0.1:${hubPort}`, "--api-key", apiKey, "--detach"])
  expect(up.code).toBe(0)
  const pid = Number(Fs.readFileSync(Path.join(home, "agent.pid"), "utf8"))
  detachedPids.push(pid)
  track(pid)
  agentPid = pid
  expect((await command(home, ["expose", `127.0.0.1:${servicePort}`, "--name", "web"])).code).toBe(0)
  await Promise.all([
    createLink("main", ["--methods", "GET,HEAD,POST", "--paths", "/api/v1,/health", "--rate-limit", "100000/min"]),
    createLink("limited", ["--paths", "/api/v1", "--rate-limit", "3/min"]),
    createLink("revoked", []),
    createLink("short", ["--expires", "3s"])
  ])
}, 900_000)

afterAll(async () => {
  await new Promise<void>((resolve) => service?.close(() => resolve()))
  service?.closeAllConnections()
})

describe("connect link (real hub, real agent, real HTTP service)", () => {
  it("prints the URLs once, and the hub never logs the token", async () => {
    const made = await command(dir("cli-print"), ["link", "create", "web", "--hub", `http://127.0.0.1:${hubPort}`], {
      CONNECT_API_KEY: apiKey
    })
    expect(made.code).toBe(0)
    const [url, domain] = made.stdout.split("\n")
    const token = /\/l\/([0-9a-f]{40})\/$/.exec(url!)![1]!
    expect(domain).toBe(`http://${token}.links.test/`)
    expect(hub.stdout() + hub.stderr()).not.toContain(token)
    const listed = await command(dir("cli-list"), ["link", "list", "--hub", `http://127.0.0.1:${hubPort}`, "--json"], {
      CONNECT_API_KEY: apiKey
    })
    expect(listed.code).toBe(0)
    expect(listed.stdout).not.toContain(token)
    expect(JSON.parse(listed.stdout).links).toHaveLength(5)
  }, 600_000)

  it("forwards sub-paths and queries, sets X-Forwarded-*, drops hop-by-hop headers", async () => {
    const res = await request(`/l/${tokens.main}/api/v1/users/42?q=a%20b&x=1`, {
      headers: { connection: "keep-alive, x-hop", "x-hop": "1", "proxy-connection": "x", "x-forwarded-for": "6.6.6.6", "x-end": "kept" }
    })
    expect(res.status).toBe(200)
    expect(res.headers["x-service"]).toBe("yes")
    const saw = json(res.body)
    expect(saw.url).toBe("/api/v1/users/42?q=a%20b&x=1")
    expect(saw.headers["x-forwarded-for"]).toBe("127.0.0.1")
    expect(saw.headers["x-forwarded-proto"]).toBe("http")
    expect(saw.headers["x-end"]).toBe("kept")
    expect(saw.headers["x-hop"]).toBeUndefined()
    expect(saw.headers["proxy-connection"]).toBeUndefined()
    const viaDomain = await request(`/api/v1/health-check?d=1`, { headers: { host: `${tokens.main}.links.test` } })
    expect(viaDomain.status).toBe(200)
    expect(json(viaDomain.body).url).toBe("/api/v1/health-check?d=1")
  }, 60_000)

  it("passes JSON, form, multipart and a 50 MiB binary body byte-exact", async () => {
    const bodies: Array<[string, Buffer]> = [
      ["application/json", Buffer.from(JSON.stringify({ a: 1, b: ["é", "ü"], c: null }))],
      ["application/x-www-form-urlencoded", Buffer.from("a=1&b=%C3%A9&c=x+y")],
      [
        "multipart/form-data; boundary=XyZ",
        Buffer.concat([
          Buffer.from("--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"b.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"),
          Crypto.randomBytes(100_000),
          Buffer.from("\r\n--XyZ--\r\n")
        ])
      ],
      ["application/octet-stream", Crypto.randomBytes(50 * 1024 * 1024)]
    ]
    for (const [type, body] of bodies) {
      const res = await request(`/l/${tokens.main}/api/v1/upload`, { method: "POST", headers: { "content-type": type }, body })
      expect(res.status, type).toBe(200)
      const saw = json(res.body)
      expect(saw.length, type).toBe(body.length)
      expect(saw.sha, type).toBe(sha(body))
      expect(saw.headers["content-type"]).toBe(type)
    }
  }, 180_000)

  it("streams a chunked answer with its trailers", async () => {
    const res = await request(`/l/${tokens.main}/api/v1/chunked`)
    expect(res.status).toBe(200)
    expect(res.headers["transfer-encoding"]).toBe("chunked")
    expect(res.body.toString()).toBe([0, 1, 2, 3, 4].map((i) => `chunk ${i}\n`).join(""))
    expect(res.trailers["x-checksum"]).toBe("five")
  }, 60_000)

  it("passes a WebSocket upgrade and echoes through it", async () => {
    const socket = new WebSocket(`ws://127.0.0.1:${hubPort}/l/${tokens.main}/api/v1/ws`, { perMessageDeflate: false })
    await new Promise<void>((resolve, reject) => {
      socket.once("open", () => resolve())
      socket.once("error", reject)
    })
    const payload = Crypto.randomBytes(200_000)
    const echoed = new Promise<Buffer>((resolve) => socket.once("message", (data) => resolve(data as Buffer)))
    socket.send(payload)
    expect(sha(await echoed)).toBe(sha(payload))
    socket.close()
  }, 60_000)

  it("refuses every path escape (400/403) and a method not allowed (405) before the service sees it", async () => {
    const before = seen.length
    const attempts: Array<[string, number, string?]> = [
      ["/api/v1/../admin", 403],
      ["/api/v1/%2e%2e/admin", 400],
      ["/api/v1/%2E%2E/admin", 400],
      ["/api/v1/.%2e/admin", 400],
      ["/api/v1/%2fadmin", 400],
      ["/api/v1/%5c..%5cadmin", 400],
      ["/api/v1\\..\\admin", 400],
      ["//admin", 400],
      ["/api/v1//admin", 400],
      ["/api/v1/%00", 400],
      ["/admin", 403],
      ["/api/v10", 403],
      ["/api/v1/x", 405, "DELETE"]
    ]
    for (const [path, status, method] of attempts) {
      const res = await request(`/l/${tokens.main}${path}`, method ? { method } : {})
      expect(res.status, path).toBe(status)
      expect(json(res.body).error.code).toBeTypeOf("string")
    }
    expect(seen.length).toBe(before)
    // An escape on the domain route is refused alike.
    expect((await request("/api/v1/../admin", { headers: { host: `${tokens.main}.links.test` } })).status).toBe(403)
  }, 60_000)

  it("answers 429 with Retry-After past the rate limit", async () => {
    const statuses = []
    for (let i = 0; i < 5; i++) statuses.push((await request(`/l/${tokens.limited}/api/v1/r${i}`)).status)
    expect(statuses).toEqual([200, 200, 200, 429, 429])
    const limited = await request(`/l/${tokens.limited}/api/v1/again`)
    expect(limited.status).toBe(429)
    expect(Number(limited.headers["retry-after"])).toBeGreaterThanOrEqual(1)
  }, 60_000)

  it("answers 410 right after revoke and after expiry; 404 for a token that is no link", async () => {
    expect((await request(`/l/${tokens.revoked}/`)).status).toBe(200)
    const revoked = await command(dir("cli-revoke"), ["link", "revoke", ids.revoked!, "--hub", `http://127.0.0.1:${hubPort}`], {
      CONNECT_API_KEY: apiKey
    })
    expect(revoked.code).toBe(0)
    expect((await request(`/l/${tokens.revoked}/`)).status).toBe(410)
    await new Promise((r) => setTimeout(r, 3_000))
    expect((await request(`/l/${tokens.short}/`)).status).toBe(410)
    expect((await request(`/l/${"0".repeat(40)}/`)).status).toBe(404)
    expect((await request(`/l/not-a-token/`)).status).toBe(404)
  }, 600_000)

  it("has every allowed and denied use on the log, each pooled connection a tunnel naming its link, no token", async () => {
    // Coalesced denials are written when their window (--denial-window 2s) ends: read until every refusal is counted
    // (at most 20 s).
    const named = [ids.main, ids.limited, ids.revoked, ids.short]
    const refusals = (all: ReadonlyArray<{ type: string; data: any }>) =>
      all.filter((e) => e.type === "LinkAccessed" && e.data.outcome === "denied" && named.includes(e.data.linkId))
        .reduce((n, e) => n + (e.data.count ?? 1), 0)
    let log = await events()
    for (const deadline = Date.now() + 20_000; refusals(log) < 19 && Date.now() < deadline;) {
      await new Promise((r) => setTimeout(r, 250))
      log = await events()
    }
    const text = JSON.stringify(log)
    for (const token of Object.values(tokens)) expect(text).not.toContain(token)
    const accessed = log.filter((e) => e.type === "LinkAccessed").map((e) => e.data)
    const uses = (link: string, outcome: string, reason?: string) =>
      accessed.filter((a) => a.linkId === ids[link] && a.outcome === outcome && a.reason === reason)
        .reduce((n, a) => n + (a.count ?? 1), 0)
    // main: 2 GETs, 4 POSTs, 1 chunked, 1 WebSocket; its refusals by reason.
    expect(uses("main", "allowed")).toBe(8)
    expect(uses("main", "denied", "bad_path")).toBe(9)
    expect(uses("main", "denied", "path_not_allowed")).toBe(4)
    expect(uses("main", "denied", "method_not_allowed")).toBe(1)
    expect(uses("limited", "allowed")).toBe(3)
    expect(uses("limited", "denied", "rate_limited")).toBe(3)
    expect(uses("revoked", "allowed")).toBe(1)
    expect(uses("revoked", "denied", "revoked")).toBe(1)
    expect(uses("short", "denied", "expired")).toBe(1)
    const big = accessed.find((a) => a.linkId === ids.main && a.bytesUp === 50 * 1024 * 1024)
    expect(big).toMatchObject({ method: "POST", path: "/api/v1/upload", status: 200, ip: "127.0.0.1" })
    const ws = accessed.find((a) => a.linkId === ids.main && a.status === 101)
    expect(ws?.bytesUp).toBeGreaterThan(200_000)
    const opened = log.filter((e) => e.type === "TunnelOpened" && e.data.viaLinkId === ids.main)
    expect(opened.length).toBeGreaterThanOrEqual(1)
    expect(opened[0]!.data.fromAgentId).toBeUndefined()
    expect(log.filter((e) => e.type === "LinkCreated")).toHaveLength(5)
    expect(log.filter((e) => e.type === "LinkRevoked").map((e) => e.data.linkId)).toEqual([ids.revoked])
  }, 60_000)

  it("answers 502 with a short JSON body once the exposing agent is gone, and records it", async () => {
    process.kill(agentPid, "SIGTERM")
    let res = await request(`/l/${tokens.main}/api/v1/after`)
    for (let i = 0; i < 60 && res.status === 200; i++) {
      await new Promise((r) => setTimeout(r, 500))
      res = await request(`/l/${tokens.main}/api/v1/after`)
    }
    expect(res.status).toBe(502)
    expect(json(res.body)).toEqual({ error: { code: "AgentOffline", message: "the service behind this link is offline" } })
    let offline: Array<unknown> = []
    for (let i = 0; i < 30 && offline.length === 0; i++) {
      offline = (await events()).filter((e) =>
        e.type === "LinkAccessed" && e.data.linkId === ids.main && e.data.reason === "agent_offline" && e.data.status === 502
      )
      if (offline.length === 0) await new Promise((r) => setTimeout(r, 500))
    }
    expect(offline.length).toBeGreaterThanOrEqual(1)
  }, 120_000)
})
