/**
 * A hub that dies with tunnels open, as real processes on 127.0.0.1: a hub on a fresh database, agent A exposing a TCP
 * echo server, agent B reaching it with three connections held open; the hub is SIGKILLed and restarted on the same
 * data directory and database. At startup it closes, in the log, what it left open: every TunnelOpened gets its
 * TunnelClosed (hub_crashed), the agents it had connected get AgentDisconnected, every event it recorded names its hub
 * id, and `connect audit verify` passes.
 */
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { describe, expect, it } from "vitest"
import * as AgentWorld from "../support/AgentWorld.ts"
import { isAlive, track, waitUntil } from "../support/processes.ts"
import { queryOnce } from "../support/TestDatabase.ts"

const CONNECTED = /connected to (\S+) as (\S+) \(workspace (\S+)\)/

const world = AgentWorld.make("crash")
const { command, connect, detachedPids, dir, firstHub, sockets, startHub } = world

const query = <A>(statement: string): Promise<Array<A>> => queryOnce<A>(world.databaseUrl(), statement)

/** Opens a connection through the reach port and waits for its first echo: the tunnel is open on the hub. */
const holdOpen = (port: number) =>
  new Promise<Net.Socket>((resolve, reject) => {
    const socket = Net.connect({ port, host: "127.0.0.1" })
    sockets.push(socket)
    socket.once("data", () => resolve(socket))
    socket.once("error", reject)
    socket.write("hello\n")
  })

interface Row {
  readonly stream: string
  readonly type: string
  readonly data: { readonly reason?: string }
  readonly meta: { readonly hubId?: string }
}

describe("a hub SIGKILLed with tunnels open (real processes)", () => {
  it("closes, at its next start, every tunnel and connection it left open, and the chain verifies", async () => {
    const hubHome = dir("hub")
    const homeA = dir("agent-a")
    const homeB = dir("agent-b")

    const first = await firstHub(hubHome)
    let hub = first.hub
    const { apiKey, port: hubPort, url: hubUrl } = first

    const upA = await command(homeA, ["up", "--hub", hubUrl, "--api-key", apiKey, "--label", "agent-a", "--detach"])
    expect(upA.code).toBe(0)
    const pidA = Number(Fs.readFileSync(Path.join(homeA, "agent.pid"), "utf8"))
    detachedPids.push(pidA)
    track(pidA)
    expect((await command(homeA, ["expose", `127.0.0.1:${world.echoPort()}`, "--name", "echo"])).code).toBe(0)
    const agentB = connect(homeB, ["up", "--hub", hubUrl, "--api-key", apiKey, "--label", "agent-b"])
    await agentB.waitFor(CONNECTED, 60_000)
    const reached = await command(homeB, ["reach", "echo", "--port", "0"])
    expect(reached.code).toBe(0)
    const reachPort = Number(/^echo → 127\.0\.0\.1:(\d+)$/m.exec(reached.stdout)?.[1])

    // Three tunnels open, each recorded (TunnelOpened is appended before the first byte moves).
    for (let i = 0; i < 3; i++) await holdOpen(reachPort)
    const opened = await query<Row>(`select stream from events where type = 'TunnelOpened'`)
    expect(opened).toHaveLength(3)

    hub.child.kill("SIGKILL")
    await hub.exited(10_000)
    // Agent A is stopped for good while the hub is down: nobody else will ever record how its connection ended.
    process.kill(pidA, "SIGKILL")
    expect(await waitUntil(() => !isAlive(pidA), 5_000)).toBe(true)

    hub = startHub(hubHome, hubPort)
    await hub.waitFor(AgentWorld.LISTENING, 90_000)

    const events = await query<Row>(`select stream, type, data, meta from events order by position`)
    const closedReasons = new Map(
      events.filter((e) => e.type === "TunnelClosed").map((e) => [e.stream, e.data.reason])
    )
    for (const { stream } of opened) expect(closedReasons.get(stream)).toBe("hub_crashed")
    // A's connection was this hub's and is closed in the log; the read model agrees.
    const agents = await query<{ label: string; connected: boolean }>(`select label, connected from agents order by label`)
    expect(agents.find((a) => a.label === "agent-a")?.connected).toBe(false)
    expect(events.some((e) => e.type === "AgentDisconnected" && e.data.reason === "hub_crashed")).toBe(true)

    // Every event this hub recorded for its agents names its hub id, the one kept in its data directory.
    const hubId = Fs.readFileSync(Path.join(hubHome, "hub", "hub-id"), "utf8").trim()
    expect(Fs.statSync(Path.join(hubHome, "hub", "hub-id")).mode & 0o777).toBe(0o600)
    const relayed = events.filter((e) => /^(Tunnel|AgentConnected|AgentDisconnected|ServiceExposed)/.test(e.type))
    expect(relayed.length).toBeGreaterThan(0)
    for (const e of relayed) expect(e.meta.hubId).toBe(hubId)

    const verify = await command(hubHome, ["audit", "verify"], { DATABASE_URL: world.databaseUrl() })
    expect(verify.stdout + verify.stderr).toMatch(/^OK: \d+ events, hash chain intact/m)
    expect(verify.code).toBe(0)

    hub.child.kill("SIGTERM")
    await hub.exited(15_000)
    agentB.child.kill("SIGTERM")
  }, 240_000)
})
