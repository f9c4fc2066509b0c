/**
 * The agent as users run it, all real processes on 127.0.0.1: a hub on a fresh Postgres database, agent A
 * (`connect up --detach`, `connect expose`) in front of a TCP echo server, agent B (`connect up`, `connect reach`)
 * in the foreground; 1 MiB crosses byte-exact; then the hub is SIGKILLed and restarted on the same database while
 * B's reach port stays bound, and a new connection through it works again shortly after the hub is back.
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { describe, expect, it } from "vitest"
import * as AgentWorld from "../support/AgentWorld.ts"
import { isAlive, track, waitUntil } from "../support/processes.ts"

const CONNECTED = /connected to (\S+) as (\S+) \(workspace (\S+)\)/

const world = AgentWorld.make("agent")
const { command, connect, detachedPids, dir, firstHub, startHub } = world

/** Sends `data` through 127.0.0.1:`port`, half-closes, resolves the sha256 and length of what came back. */
const roundTrip = (port: number, data: Buffer, timeoutMs: number) =>
  new Promise<{ sha: string; length: number }>((resolve, reject) => {
    const socket = Net.connect({ port, host: "127.0.0.1", allowHalfOpen: true })
    const hash = Crypto.createHash("sha256")
    let length = 0
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`no answer through port ${port} within ${timeoutMs} ms`))
    }, timeoutMs)
    socket.on("data", (chunk: Buffer) => {
      hash.update(chunk)
      length += chunk.byteLength
    })
    socket.once("end", () => {
      clearTimeout(timer)
      socket.end()
      resolve({ sha: hash.digest("hex"), length })
    })
    socket.once("error", (error) => {
      clearTimeout(timer)
      reject(error)
    })
    socket.end(data)
  })

const sha = (data: Buffer) => Crypto.createHash("sha256").update(data).digest("hex")

describe("connect agent (real hub, real agents, real TCP)", () => {
  it("provisions, exposes, reaches byte-exact, rotates, and survives a hub SIGKILL with the reach port bound", async () => {
    const hubHome = dir("hub")
    const homeA = dir("agent-a")
    const homeB = dir("agent-b")

    // The hub, first start on a fresh database: it prints the admin API key once.
    const first = await firstHub(hubHome)
    let hub = first.hub
    const { apiKey, port: hubPort, url: hubUrl } = first

    // Agent A in the background, then an exposure through its control socket.
    const upA = await command(homeA, ["up", "--hub", hubUrl, "--api-key", apiKey, "--label", "agent-a", "--detach"])
    expect(upA.code).toBe(0)
    expect(upA.stdout).toMatch(/provisioned agent \S+ in workspace \S+; its token \(valid until \S+\) is stored in .*agent\.json \(mode 0600\)/)
    expect(upA.stdout).toMatch(/agent running in the background \(pid \d+\), connected to http:\/\/127\.0\.0\.1:\d+; log: /)
    const pidA = Number(Fs.readFileSync(Path.join(homeA, "agent.pid"), "utf8"))
    detachedPids.push(pidA)
    track(pidA)
    expect(Fs.readFileSync(Path.join(homeA, "agent.log"), "utf8")).toMatch(CONNECTED)
    const exposed = await command(homeA, ["expose", `127.0.0.1:${world.echoPort()}`, "--name", "echo"])
    expect(exposed).toMatchObject({ code: 0, stdout: `exposed echo → 127.0.0.1:${world.echoPort()}\n` })

    // Agent B in the foreground over the tcp transport (A is on the default, msgpack), then a reach on a free port.
    const agentB = connect(homeB, ["up", "--hub", hubUrl, "--api-key", apiKey, "--label", "agent-b", "--transport", "tcp"])
    const connectedB = await agentB.waitFor(CONNECTED, 60_000)
    expect(connectedB[1]).toBe(hubUrl)
    const reached = await command(homeB, ["reach", "echo", "--port", "0"])
    expect(reached.code).toBe(0)
    const reachPort = Number(/^echo → 127\.0\.0\.1:(\d+)$/m.exec(reached.stdout)?.[1])
    expect(reachPort).toBeGreaterThan(0)

    const data = Crypto.randomBytes(1024 * 1024)
    expect(await roundTrip(reachPort, data, 30_000)).toEqual({ sha: sha(data), length: data.length })

    const status = await command(homeB, ["status", "--json"])
    expect(status.code).toBe(0)
    expect(JSON.parse(status.stdout)).toMatchObject({
      hub: hubUrl,
      agentId: connectedB[2],
      workspaceId: connectedB[3],
      transport: "tcp",
      running: true,
      connected: true,
      reaches: [{ name: "echo", port: reachPort, bound: true }]
    })
    const services = await command(homeB, ["services", "--json"])
    expect(services.code).toBe(0)
    expect(JSON.parse(services.stdout).services).toEqual(
      expect.arrayContaining([expect.objectContaining({ name: "echo", agentLabel: "agent-a", online: true })])
    )

    // `reach --check` through the running agent: probed on A's side; an echo server is plain TCP, never refused.
    const checked = await command(homeB, ["reach", "echo", "--check"])
    expect(checked.code).toBe(0)
    expect(checked.stdout).toContain("✓ DNS OK (127.0.0.1 → 127.0.0.1")
    expect(checked.stdout).toContain(`✓ TCP OK (127.0.0.1:${world.echoPort()}`)
    expect(checked.stdout).toContain("– TLS: not TLS (plain TCP service)")
    expect(checked.stdout).toContain("– HTTP: not HTTP")
    expect(checked.stdout).toMatch(/✓ Latency: [\d.]+ ms \(round trip through the hub\)/)
    const checkedJson = await command(homeB, ["reach", "echo", "--check", "--json"])
    expect(checkedJson.code).toBe(0)
    expect(JSON.parse(checkedJson.stdout)).toMatchObject({ service: "echo", ok: true, tcp: { ok: true }, tls: { ok: false } })
    const missing = await command(homeB, ["reach", "nope", "--check"])
    expect(missing.code).toBe(1)
    expect(missing.stderr).toContain("Service not found")

    // The token is private to the state file: mode 0600, in no output of any process.
    const stateB = JSON.parse(Fs.readFileSync(Path.join(homeB, "agent.json"), "utf8")) as { token: string; reaches: object }
    expect(Fs.statSync(Path.join(homeB, "agent.json")).mode & 0o777).toBe(0o600)
    expect(stateB.reaches).toEqual({ echo: reachPort })
    const rotated = await command(homeB, ["up", "--rotate-token"])
    expect(rotated.code).toBe(0)
    expect(rotated.stdout).toContain("rotated the agent token")
    expect(rotated.stdout).toMatch(/the running agent \(pid \d+\) uses the new token from its next reconnect/)
    const newToken = (JSON.parse(Fs.readFileSync(Path.join(homeB, "agent.json"), "utf8")) as { token: string }).token
    expect(newToken).toMatch(/^[0-9a-f]{64}$/)
    expect(newToken).not.toBe(stateB.token)
    const everything = [upA, exposed, reached, status, services, rotated].map((r) => r.stdout + r.stderr).join("") +
      agentB.stdout() + agentB.stderr() + Fs.readFileSync(Path.join(homeA, "agent.log"), "utf8")
    expect(everything).not.toContain(stateB.token)
    expect(everything).not.toContain(newToken)

    // The hub dies without a goodbye; B keeps its port.
    hub.child.kill("SIGKILL")
    await hub.exited(10_000)
    await agentB.waitFor(/disconnected from the hub/, 30_000)
    const probe = await new Promise<boolean>((resolve) => {
      const socket = Net.connect({ port: reachPort, host: "127.0.0.1" })
      socket.once("connect", () => {
        socket.destroy()
        resolve(true)
      })
      socket.once("error", () => resolve(false))
    })
    expect(probe).toBe(true)

    // Back on the same database and port: B reconnects with the rotated token, A re-exposes, bytes flow again.
    hub = startHub(hubHome, hubPort)
    await hub.waitFor(AgentWorld.LISTENING, 90_000)
    const back = Date.now()
    let worked: number | undefined
    while (worked === undefined && Date.now() - back < 30_000) {
      try {
        const small = Crypto.randomBytes(64 * 1024)
        const got = await roundTrip(reachPort, small, 15_000)
        if (got.sha === sha(small)) worked = Date.now() - back
      } catch {
        await new Promise((r) => setTimeout(r, 200))
      }
    }
    console.log(`agent e2e: a new connection through the reach port worked ${worked} ms after the hub was back`)
    const logs = () =>
      `--- agent B\n${agentB.stderr()}\n--- agent A\n${Fs.readFileSync(Path.join(homeA, "agent.log"), "utf8")}\n--- hub\n${hub.stdout()}${hub.stderr()}`
    if (worked === undefined || worked >= 2_000) console.log(logs())
    expect(worked).toBeDefined()
    // The agents probe a hub that went away about once a second instead of waiting out their grown backoff: ~1 s on
    // an idle machine. The bound leaves room for a loaded shared CI machine, where the restarted hub itself can take
    // seconds to answer its first Hello.
    expect(worked!).toBeLessThan(15_000)
    expect(agentB.stdout().match(new RegExp(CONNECTED.source, "g"))?.length).toBe(2)
    expect(await roundTrip(reachPort, data, 30_000)).toEqual({ sha: sha(data), length: data.length })

    // Ctrl-C / SIGTERM stop an agent cleanly: exit 0, control socket gone.
    agentB.child.kill("SIGTERM")
    expect(await agentB.exited(15_000)).toEqual({ code: 0, signal: null })
    expect(Fs.existsSync(Path.join(homeB, "agent.sock"))).toBe(false)

    // With no agent running, `reach --check` makes one short connection of its own.
    const direct = await command(homeB, ["reach", "echo", "--check", "--json"])
    expect(direct.code).toBe(0)
    expect(JSON.parse(direct.stdout)).toMatchObject({ service: "echo", ok: true, tcp: { ok: true } })

    // With no agent running, `connect reach` runs one in the foreground itself, on the same port as before.
    const foreground = connect(homeB, ["reach", "echo"])
    await foreground.waitFor(/no agent is running .*: starting one in the foreground/, 60_000)
    expect((await foreground.waitFor(/^echo → 127\.0\.0\.1:(\d+)$/m, 60_000))[1]).toBe(String(reachPort))
    expect(await roundTrip(reachPort, data, 30_000)).toEqual({ sha: sha(data), length: data.length })
    foreground.child.kill("SIGTERM")
    expect(await foreground.exited(15_000)).toEqual({ code: 0, signal: null })
    process.kill(pidA, "SIGTERM")
    expect(await waitUntil(() => !isAlive(pidA), 15_000)).toBe(true)
    expect(Fs.existsSync(Path.join(homeA, "agent.pid"))).toBe(false)
    const stopped = await command(homeB, ["status"])
    expect(stopped.stdout).toContain("process:    not running")
    expect(stopped.stdout).toContain(`echo → 127.0.0.1:${reachPort}`)
    hub.child.kill("SIGTERM")
    await hub.exited(15_000)
  }, 300_000)
})
