/**
 * Hostile clients and a hostile service around a public link, as real processes (a hub, an agent exposing a node HTTP
 * server of this test): a body smuggled on the link's pooled connection with `Transfer-Encoding: chunked` or
 * `Connection: Content-Length` never becomes a request of its own at the service; a service answering with a control
 * character in its status line has its answer passed on with the standard phrase, and the hub keeps running (it ended
 * the hub); an upgrade to
 * anything but WebSocket is refused; a link id typed in upper case revokes its link. Each was found by a review of the links change and reproduced against it.
 */
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Net from "node:net"
import * as Path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as AgentWorld from "../support/AgentWorld.ts"
import { track } from "../support/processes.ts"

const world = AgentWorld.make("link-hostile")
const { connect, detachedPids, dir } = world

const command = async (home: string, args: ReadonlyArray<string>, extra: NodeJS.ProcessEnv = {}) => {
  const cli = connect(home, args, extra)
  const exit = await cli.exited(240_000)
  return { code: exit.code, stdout: cli.stdout(), stderr: cli.stderr() }
}

/** Every request line the service parsed, in order. */
const seen: Array<string> = []
let service: Http.Server
let hubPort = 0
let hub: ReturnType<typeof connect>
let token = ""
let linkId = ""
let apiKey = ""

const startService = () =>
  new Promise<number>((resolve) => {
    service = Http.createServer((request, response) => {
      seen.push(`${request.method} ${request.url}`)
      if (request.url === "/api/bad-status") {
        // Written by hand: node's own writeHead refuses this status line, node's client parser accepts it.
        request.socket.end("HTTP/1.1 200 O\u0001K\r\nContent-Length: 2\r\n\r\nok")
        return
      }
      request.resume()
      request.on("end", () => {
        response.writeHead(200, { "content-type": "text/plain" })
        response.end(`answer for ${request.url}`)
      })
    })
    service.listen(0, "127.0.0.1", () => resolve((service.address() as Net.AddressInfo).port))
  })

/** Sends `raw` to the hub on a connection of its own and collects what comes back until the hub closes or 3 s pass. */
const rawExchange = (raw: string) =>
  new Promise<string>((resolve, reject) => {
    const socket = Net.connect(hubPort, "127.0.0.1")
    const chunks: Array<Buffer> = []
    socket.on("data", (c: Buffer) => chunks.push(c))
    socket.on("error", reject)
    socket.setTimeout(3_000, () => socket.end())
    socket.on("close", () => resolve(Buffer.concat(chunks).toString("latin1")))
    socket.write(raw)
  })

const get = (path: string) =>
  new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = Http.get({ host: "127.0.0.1", port: hubPort, path, agent: false }, (res) => {
      let body = ""
      res.setEncoding("utf8")
      res.on("data", (c: string) => (body += c))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.setTimeout(60_000, () => req.destroy(new Error("timeout")))
    req.on("error", reject)
  })

beforeAll(async () => {
  const servicePort = await startService()
  hub = connect(dir("hub"), ["hub", "--port", "0"], { DATABASE_URL: world.databaseUrl() })
  hubPort = Number((await hub.waitFor(AgentWorld.LISTENING, 300_000))[2])
  apiKey = (await hub.waitFor(AgentWorld.API_KEY, 5_000))[1]!
  const home = dir("agent")
  expect((await command(home, ["up", "--hub", `http://127.0.0.1:${hubPort}`, "--api-key", apiKey, "--detach"])).code).toBe(0)
  const pid = Number(Fs.readFileSync(Path.join(home, "agent.pid"), "utf8"))
  detachedPids.push(pid)
  track(pid)
  expect((await command(home, ["expose", `127.0.0.1:${servicePort}`, "--name", "web"])).code).toBe(0)
  const made = await command(dir("cli"), [
    "link", "create", "web", "--hub", `http://127.0.0.1:${hubPort}`, "--json",
    "--methods", "GET,HEAD,DELETE", "--paths", "/api", "--rate-limit", "100000/min"
  ], { CONNECT_API_KEY: apiKey })
  expect(made.code).toBe(0)
  token = JSON.parse(made.stdout).token
  linkId = JSON.parse(made.stdout).linkId
  // The link works, and its pooled connection to the service is open.
  expect((await get(`/l/${token}/api/warm`)).status).toBe(200)
}, 900_000)

afterAll(async () => {
  await new Promise<void>((resolve) => service?.close(() => resolve()))
  service?.closeAllConnections()
})

describe("a public link against hostile clients and a hostile service", () => {
  it("a chunked body on a GET stays a body: the service never parses the request hidden in it", async () => {
    const hidden = "GET /admin/chunked-smuggle HTTP/1.1\r\nHost: x\r\n\r\n"
    const answer = await rawExchange(
      `GET /l/${token}/api/outer HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n` +
        `${hidden.length.toString(16)}\r\n${hidden}\r\n0\r\n\r\n`
    )
    expect(answer).toMatch(/^HTTP\/1\.1 200/)
    // More requests on the same pool: a smuggled request would have been parsed by now.
    for (let i = 0; i < 3; i++) expect((await get(`/l/${token}/api/after-${i}`)).status).toBe(200)
    expect(seen).toContain("GET /api/outer")
    expect(seen.filter((line) => line.includes("/admin/"))).toEqual([])
  }, 120_000)

  it("Connection: Content-Length does not strip the length of a body", async () => {
    const hidden = "GET /admin/length-smuggle HTTP/1.1\r\nHost: x\r\n\r\n"
    const answer = await rawExchange(
      `DELETE /l/${token}/api/outer-cl HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close, Content-Length\r\n` +
        `Content-Length: ${hidden.length}\r\n\r\n${hidden}`
    )
    expect(answer).toMatch(/^HTTP\/1\.1 200/)
    for (let i = 0; i < 3; i++) expect((await get(`/l/${token}/api/after-cl-${i}`)).status).toBe(200)
    expect(seen).toContain("DELETE /api/outer-cl")
    expect(seen.filter((line) => line.includes("/admin/"))).toEqual([])
  }, 120_000)

  it("a status line node will not write back goes on with the standard phrase, and the hub goes on serving", async () => {
    const bad = await get(`/l/${token}/api/bad-status`)
    expect(bad).toEqual({ status: 200, body: "ok" })
    expect((await get(`/l/${token}/api/still-there`)).status).toBe(200)
    expect((await get("/health")).status).toBe(200)
  }, 120_000)

  it("an upgrade to h2c is refused before it reaches the service", async () => {
    const before = seen.length
    const answer = await rawExchange(
      `GET /l/${token}/api/h2 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n` +
        `HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n`
    )
    expect(answer).toMatch(/^HTTP\/1\.1 400/)
    expect(seen.slice(before)).not.toContain("GET /api/h2")
  }, 120_000)

  it("a link id typed in upper case revokes that link (it answered 404 and the link stayed live)", async () => {
    const revoked = await command(dir("cli-revoke"), ["link", "revoke", linkId.toUpperCase(), "--hub", `http://127.0.0.1:${hubPort}`], {
      CONNECT_API_KEY: apiKey
    })
    expect(revoked.stderr).toBe("")
    expect(revoked.code).toBe(0)
    expect((await get(`/l/${token}/api/after-revoke`)).status).toBe(410)
  }, 300_000)
})
