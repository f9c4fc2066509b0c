/**
 * A hub SIGKILLed in the middle of a public-link request, as real processes on 127.0.0.1: a hub, an agent exposing a
 * node HTTP service of this test, a link, requests through `/l/TOKEN/` that completed, and one slow answer streaming
 * through the link's pooled connection when the hub dies. Restarted on the same data directory and database, the hub
 * closes the pooled connection's tunnel in the log (TunnelClosed `hub_crashed`), `connect audit verify` passes, every
 * completed request has exactly one `LinkAccessed` (none twice, spool replay or not), and the link works again.
 */
import * as Fs from "node:fs"
import * as Http from "node:http"
import type * as Net from "node:net"
import * as Path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as AgentWorld from "../support/AgentWorld.ts"
import { track, waitUntil } from "../support/processes.ts"
import { queryOnce } from "../support/TestDatabase.ts"

const world = AgentWorld.make("linkcrash")
const { connect, detachedPids, dir, firstHub, startHub } = world

const command = async (home: string, args: ReadonlyArray<string>, extra: NodeJS.ProcessEnv = {}) => {
  const cli = connect(home, args, extra)
  const exit = await cli.exited(240_000)
  return { code: exit.code, stdout: cli.stdout(), stderr: cli.stderr() }
}

const query = <A>(statement: string): Promise<Array<A>> => queryOnce<A>(world.databaseUrl(), statement)

let service: Http.Server
let servicePort = 0
/** Answers of /slow still streaming. */
const slow = new Set<Http.ServerResponse>()

const startService = () =>
  new Promise<void>((resolve) => {
    service = Http.createServer((request, response) => {
      if (request.url === "/slow") {
        // A long download: a chunk every 50 ms until the test ends or the connection goes.
        response.writeHead(200, { "content-type": "application/octet-stream" })
        slow.add(response)
        const timer = setInterval(() => response.write(Buffer.alloc(4096, 7)), 50)
        response.on("close", () => {
          clearInterval(timer)
          slow.delete(response)
        })
        return
      }
      response.writeHead(200, { "content-type": "text/plain" })
      response.end(`fast ${request.url}\n`)
    })
    service.listen(0, "127.0.0.1", () => {
      servicePort = (service.address() as Net.AddressInfo).port
      resolve()
    })
  })

const get = (port: number, path: string) =>
  new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = Http.request({ host: "127.0.0.1", port, path, agent: false }, (res) => {
      let body = ""
      res.on("data", (c: Buffer) => (body += c.toString("utf8")))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }))
      res.on("error", reject)
    })
    req.setTimeout(60_000, () => req.destroy(new Error("timeout")))
    req.on("error", reject)
    req.end()
  })

beforeAll(startService, 30_000)

afterAll(async () => {
  for (const response of slow) response.destroy()
  service?.closeAllConnections()
  await new Promise<void>((resolve) => service?.close(() => resolve()))
})

interface Row {
  readonly position: number
  readonly id: string
  readonly stream: string
  readonly type: string
  readonly data: Record<string, any>
}

describe("a hub SIGKILLed in the middle of a link request (real processes)", () => {
  it("closes the pooled connection's tunnel at its next start, verify passes, no LinkAccessed twice", async () => {
    const hubHome = dir("hub")
    const first = await firstHub(hubHome, ["--denial-window", "2s"])
    let hub = first.hub
    const { apiKey, port: hubPort, url: hubUrl } = first

    const home = dir("agent")
    expect((await command(home, ["up", "--hub", hubUrl, "--api-key", apiKey, "--detach"])).code).toBe(0)
    const agentPid = Number(Fs.readFileSync(Path.join(home, "agent.pid"), "utf8"))
    detachedPids.push(agentPid)
    track(agentPid)
    expect((await command(home, ["expose", `127.0.0.1:${servicePort}`, "--name", "web"])).code).toBe(0)
    const made = await command(dir("cli"), ["link", "create", "web", "--hub", hubUrl, "--json"], { CONNECT_API_KEY: apiKey })
    expect(made.code).toBe(0)
    const { token, linkId } = JSON.parse(made.stdout) as { token: string; linkId: string }

    // Requests that completed, each to be on the log once.
    for (let i = 0; i < 5; i++) expect(await get(hubPort, `/l/${token}/fast/${i}`)).toEqual({ status: 200, body: `fast /fast/${i}\n` })

    // A slow answer streaming through the link when the hub dies.
    let received = 0
    const streaming = new Promise<void>((resolve) => {
      const req = Http.request({ host: "127.0.0.1", port: hubPort, path: `/l/${token}/slow`, agent: false }, (res) => {
        res.on("data", (c: Buffer) => {
          received += c.length
        })
        res.on("error", () => resolve())
        res.on("close", () => resolve())
      })
      req.on("error", () => resolve())
      req.end()
    })
    expect(await waitUntil(() => received >= 64 * 1024, 30_000)).toBe(true)
    const openedBefore = await query<Row>(`select stream, data from events where type = 'TunnelOpened'`)
    expect(openedBefore.some((e) => e.data.viaLinkId === linkId)).toBe(true)

    hub.child.kill("SIGKILL")
    await hub.exited(10_000)
    await streaming
    hub = startHub(hubHome, hubPort, ["--denial-window", "2s"])
    await hub.waitFor(AgentWorld.LISTENING, 120_000)

    // Every tunnel the dead hub opened, the link's pooled connection among them, is closed in the log.
    const events = await query<Row>(`select position, id::text, stream, type, data from events order by position`)
    const closed = new Map(events.filter((e) => e.type === "TunnelClosed").map((e) => [e.stream, e.data.reason as string]))
    for (const opened of openedBefore) expect(closed.has(opened.stream), opened.stream).toBe(true)
    expect(openedBefore.filter((o) => o.data.viaLinkId === linkId).map((o) => closed.get(o.stream))).toContain("hub_crashed")

    // The link works again through the restarted hub (the agent reconnects by itself).
    let after = { status: 0, body: "" }
    for (const deadline = Date.now() + 60_000; after.status !== 200 && Date.now() < deadline;) {
      after = await get(hubPort, `/l/${token}/fast/after`).catch(() => ({ status: 0, body: "" }))
      if (after.status !== 200) await new Promise((r) => setTimeout(r, 500))
    }
    expect(after).toEqual({ status: 200, body: "fast /fast/after\n" })

    // Each completed request once: by path, and no event id twice.
    const paths = async () => {
      const rows = await query<Row>(`select position, id::text, stream, type, data from events where type = 'LinkAccessed' order by position`)
      return rows.filter((e) => e.data.outcome === "allowed").map((e) => e.data.path as string)
    }
    expect(await waitUntil(async () => (await paths()).includes("/fast/after"), 30_000)).toBe(true)
    const allowed = await paths()
    const fast = allowed.filter((p) => p.startsWith("/fast/"))
    expect(fast.sort()).toEqual(["/fast/0", "/fast/1", "/fast/2", "/fast/3", "/fast/4", "/fast/after"])
    // The request cut by the crash never completed: at most one record of it.
    expect(allowed.filter((p) => p === "/slow").length).toBeLessThanOrEqual(1)
    const ids = (await query<{ id: string }>(`select id::text from events`)).map((r) => r.id)
    expect(new Set(ids).size).toBe(ids.length)

    const verify = await command(hubHome, ["audit", "verify"], { DATABASE_URL: world.databaseUrl() })
    expect(verify.stdout + verify.stderr).toMatch(/^OK: \d+ events, hash chain intact/m)
    expect(verify.code).toBe(0)

    hub.child.kill("SIGTERM")
    await hub.exited(15_000)
  }, 600_000)
})
