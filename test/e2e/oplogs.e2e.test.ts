/**
 * The operator's logs and metrics over a whole scenario, all real processes on 127.0.0.1: a hub's first start
 * (`--log-format json --metrics-port 0`), `hub apikey create`, two agents provisioned (A detached with JSON logs, B in
 * the foreground with `--log-level warn`), an exposure, a reach, traffic, a share and a link created, a wrong API key,
 * a wrong link token, then revocations (API key, share, link, agent B).
 * - Every secret the scenario created (both API keys, both agent tokens, the share code, the link token) and the wrong
 *   key appear in no byte of any process's stdout/stderr and no file of the hub's data directory or the agents' homes
 *   (their agent.json, the token's store, aside), except the one-time display on stdout of the command that created it.
 * - Every line the hub and agent A wrote is one JSON object with ECS fields; the address is masked.
 * - Agent B at --log-level warn writes no info line.
 * - The metrics endpoint, scraped with a real GET, moved by exactly what happened.
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { describe, expect, it } from "vitest"
import * as AgentWorld from "../support/AgentWorld.ts"
import { track, waitUntil, type Spawned } from "../support/processes.ts"

const world = AgentWorld.make("oplogs")
const { connect, detachedPids, dir } = world

/** `connect ARGS` to its end; bounded at 3 minutes (a process's start alone took 50 s at load average 40). */
const command = async (home: string, args: ReadonlyArray<string>, extra: NodeJS.ProcessEnv = {}) => {
  const cli = connect(home, args, extra)
  const exit = await cli.exited(180_000)
  return { code: exit.code, stdout: cli.stdout(), stderr: cli.stderr() }
}

/** Every byte a process wrote, and the secrets it may show (the one-time display of what it created). */
interface Output {
  readonly name: string
  readonly text: string
  readonly displays: ReadonlyArray<string>
}

const roundTrip = (port: number, data: Buffer) =>
  new Promise<Buffer>((resolve, reject) => {
    const socket = Net.connect({ port, host: "127.0.0.1", allowHalfOpen: true })
    const chunks: Array<Buffer> = []
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`no answer through ${port}`))
    }, 30_000)
    socket.on("data", (chunk: Buffer) => chunks.push(chunk))
    socket.once("end", () => {
      clearTimeout(timer)
      socket.end()
      resolve(Buffer.concat(chunks))
    })
    socket.once("error", reject)
    socket.end(data)
  })

/** The sum of the samples of `name` whose labels include every `labels` pair. */
const sample = (text: string, name: string, labels: Record<string, string> = {}): number => {
  let sum = 0
  for (const line of text.split("\n")) {
    const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line)
    if (!m || m[1] !== name) continue
    if (Object.entries(labels).every(([k, v]) => (m[2] ?? "").includes(`${k}="${v}"`))) sum += Number(m[3])
  }
  return sum
}

const scrape = async (port: number) => {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`)
  expect(response.status).toBe(200)
  expect(response.headers.get("content-type")).toContain("text/plain")
  return response.text()
}

/** Every file under `root`, recursively, but `except`. */
const filesUnder = (root: string, except: (path: string) => boolean): Array<string> =>
  Fs.readdirSync(root, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile())
    .map((e) => Path.join(e.parentPath, e.name))
    .filter((p) => !except(p))

describe("operational logs and metrics over a whole scenario", () => {
  it("leaks no secret, logs ECS JSON, honours --log-level, and counts in /metrics", async () => {
    const hubHome = dir("hub")
    const homeA = dir("agent-a")
    const homeB = dir("agent-b")
    const homeC = dir("agent-c")
    const outputs: Array<Output> = []
    const record = <R extends { stdout: string; stderr: string }>(name: string, r: R, displays: ReadonlyArray<string> = []): R => {
      outputs.push({ name: `${name} (stdout)`, text: r.stdout, displays })
      outputs.push({ name: `${name} (stderr)`, text: r.stderr, displays: [] })
      return r
    }

    // The hub's first start: JSON logs, metrics on a free loopback port.
    const hub: Spawned = connect(hubHome, ["hub", "--port", "0", "--log-format", "json", "--metrics-port", "0"], {
      DATABASE_URL: world.databaseUrl()
    })
    const hubUrl = (await hub.waitFor(AgentWorld.LISTENING, 90_000))[1]!
    const metricsPort = Number((await hub.waitFor(/metrics on http:\/\/127\.0\.0\.1:(\d+)\/metrics/, 10_000))[1])
    const bootstrapKey = (await hub.waitFor(/(pc_[0-9A-Za-z]{40})/, 10_000))[1]!
    const workspaceId = (await hub.waitFor(/workspace \\"default\\" \(([0-9a-f-]{36})\)/, 10_000))[1]!
    const before = await scrape(metricsPort)

    const hubEnv = { DATABASE_URL: world.databaseUrl() }
    const created = record("apikey create", await command(hubHome, ["hub", "apikey", "create", "--workspace", workspaceId, "--name", "ci"], hubEnv))
    const ciKey = /^\s+(pc_[0-9A-Za-z]{40})$/m.exec(created.stdout)![1]!
    outputs[outputs.length - 2] = { ...outputs[outputs.length - 2]!, displays: [ciKey] }

    // A: detached, JSON logs into agent.log. B: foreground, warnings only, provisioned with the second key.
    const upA = record("up A", await command(homeA, ["up", "--hub", hubUrl, "--api-key", bootstrapKey, "--label", "a", "--detach", "--log-format", "json"]))
    expect(upA.code).toBe(0)
    const pidA = Number(Fs.readFileSync(Path.join(homeA, "agent.pid"), "utf8"))
    detachedPids.push(pidA)
    track(pidA)
    const agentB = connect(homeB, ["up", "--hub", hubUrl, "--api-key", ciKey, "--label", "b", "--log-level", "warn"])
    expect(await waitUntil(() => {
      const status = Fs.existsSync(Path.join(homeB, "agent.json"))
      return status
    }, 60_000)).toBe(true)
    const connectedB = async () => {
      const s = await command(homeB, ["status", "--json"])
      return s.code === 0 && (JSON.parse(s.stdout) as { connected: boolean }).connected
    }
    for (let i = 0; i < 60 && !(await connectedB()); i++) await new Promise((r) => setTimeout(r, 500))
    expect(await connectedB()).toBe(true)

    record("expose", await command(homeA, ["expose", `127.0.0.1:${world.echoPort()}`, "--name", "echo"]))
    const reached = record("reach", await command(homeB, ["reach", "echo", "--port", "0"]))
    const reachPort = Number(/echo → 127\.0\.0\.1:(\d+)/.exec(reached.stdout)![1])
    const afterConnect = await scrape(metricsPort)
    expect(sample(afterConnect, "connect_agents_connected")).toBe(2)

    // Traffic: two tunnels of 200 KiB each way.
    const size = 200 * 1024
    for (let i = 0; i < 2; i++) {
      const data = Crypto.randomBytes(size)
      expect((await roundTrip(reachPort, data)).equals(data)).toBe(true)
    }

    // A share and a link, shown once by the commands that create them.
    const share = record("share create", await command(homeA, ["share", "create", "--service", "echo", "--api-key", bootstrapKey, "--json"]))
    expect(share.code).toBe(0)
    const shareJson = JSON.parse(share.stdout) as { code: string; share: { shareId: string } }
    outputs[outputs.length - 2] = { ...outputs[outputs.length - 2]!, displays: [shareJson.code] }
    const link = record("link create", await command(homeA, ["link", "create", "echo", "--api-key", bootstrapKey, "--json"]))
    expect(link.code).toBe(0)
    const linkJson = JSON.parse(link.stdout) as { linkId: string; url: string }
    const linkToken = /([0-9a-f]{40})/.exec(linkJson.url)![1]!
    outputs[outputs.length - 2] = { ...outputs[outputs.length - 2]!, displays: [linkToken] }

    // A stranger: a wrong API key on the API and through `connect up`, a wrong link token.
    const wrongKey = `pc_${"W".repeat(20)}${Crypto.randomBytes(10).toString("hex")}`
    const refused = await fetch(`${hubUrl}/v1/agents`, { method: "POST", headers: { authorization: `Bearer ${wrongKey}`, "content-type": "application/json" }, body: "{}" })
    expect(refused.status).toBe(401)
    const upC = record("up C (wrong key)", await command(homeC, ["up", "--hub", hubUrl, "--api-key", wrongKey]))
    expect(upC.code).toBe(1)
    const wrongLink = await fetch(`${hubUrl}/l/${Crypto.randomBytes(20).toString("hex")}/`)
    expect(wrongLink.status).toBeGreaterThanOrEqual(400)

    // Revocations: the second key, the share, the link, agent B (its connection ends at once).
    const keys = JSON.parse((await command(hubHome, ["hub", "apikey", "list", "--workspace", workspaceId, "--json"], hubEnv)).stdout) as Array<{ apiKeyId: string; name: string }>
    record("apikey revoke", await command(hubHome, ["hub", "apikey", "revoke", keys.find((k) => k.name === "ci")!.apiKeyId], hubEnv))
    record("share revoke", await command(homeA, ["share", "revoke", shareJson.share.shareId, "--api-key", bootstrapKey]))
    record("link revoke", await command(homeA, ["link", "revoke", linkJson.linkId, "--api-key", bootstrapKey]))
    const stateB = JSON.parse(Fs.readFileSync(Path.join(homeB, "agent.json"), "utf8")) as { agentId: string; token: string }
    const stateA = JSON.parse(Fs.readFileSync(Path.join(homeA, "agent.json"), "utf8")) as { token: string }
    record("agent revoke", await command(hubHome, ["hub", "agent", "revoke", stateB.agentId], hubEnv))
    await agentB.exited(30_000)
    outputs.push({ name: "agent B (stdout)", text: agentB.stdout(), displays: [] }, { name: "agent B (stderr)", text: agentB.stderr(), displays: [] })

    // Metrics moved by exactly what happened.
    let after = await scrape(metricsPort)
    for (let i = 0; i < 40 && sample(after, "connect_agents_connected") !== 1; i++) {
      await new Promise((r) => setTimeout(r, 250))
      after = await scrape(metricsPort)
    }
    const delta = (name: string, labels: Record<string, string> = {}) => sample(after, name, labels) - sample(before, name, labels)
    expect(sample(after, "connect_agents_connected")).toBe(1)
    expect(sample(after, "connect_tunnels_open")).toBe(0)
    expect(delta("connect_events_appended_total", { type: "TunnelOpened" })).toBe(2)
    expect(delta("connect_events_appended_total", { type: "TunnelClosed" })).toBe(2)
    expect(delta("connect_events_appended_total", { type: "AgentProvisioned" })).toBe(2)
    expect(delta("connect_relayed_bytes_total", { direction: "up" })).toBe(2 * size)
    expect(delta("connect_relayed_bytes_total", { direction: "down" })).toBe(2 * size)
    expect(delta("connect_auth_failures_total", { type: "ApiKeyAuthFailed" })).toBe(2)
    expect(sample(after, "connect_spool_pending")).toBe(0)
    // The writer's batches, through PgWriter's onBatch as `connect hub` wires it: every append call in one.
    expect(delta("connect_eventlog_batch_requests_count")).toBeGreaterThan(0)
    expect(delta("connect_eventlog_batch_requests_sum")).toBeGreaterThanOrEqual(delta("connect_eventlog_batch_requests_count"))
    expect(delta("connect_events_appended_total")).toBeGreaterThan(10)

    // The hub stops; everything it and the agents wrote is in.
    hub.child.kill("SIGTERM")
    await hub.exited(30_000)
    process.kill(pidA, "SIGTERM")
    await waitUntil(() => !Fs.existsSync(Path.join(homeA, "agent.pid")), 10_000)
    outputs.push({ name: "hub (stdout)", text: hub.stdout(), displays: [bootstrapKey] }, { name: "hub (stderr)", text: hub.stderr(), displays: [] })
    for (const root of [hubHome, homeA, homeB, homeC]) {
      // agent.json is where an agent keeps its token (mode 0600): its store, not a log or an output.
      for (const file of filesUnder(root, (p) => Path.basename(p) === "agent.json")) {
        outputs.push({ name: file, text: Fs.readFileSync(file).toString("latin1"), displays: [] })
      }
    }

    // The grep: every secret, every byte; only the one-time displays.
    const secrets: Record<string, string> = {
      "bootstrap API key": bootstrapKey,
      "second API key": ciKey,
      "agent A token": stateA.token,
      "agent B token": stateB.token,
      "share code": shareJson.code,
      "link token": linkToken,
      "wrong API key": wrongKey
    }
    const leaks: Array<string> = []
    for (const [what, secret] of Object.entries(secrets)) {
      for (const output of outputs) {
        const n = output.text.split(secret).length - 1
        if (n > 0 && !(output.displays.includes(secret) && n <= 2)) leaks.push(`${what} ×${n} in ${output.name}`)
      }
      const shownOnce = !what.startsWith("agent") && !what.startsWith("wrong")
      expect(outputs.filter((o) => o.displays.includes(secret) && o.text.includes(secret)).length, what).toBe(shownOnce ? 1 : 0)
    }
    expect(leaks).toEqual([])

    // ECS JSON: every line of the hub and of agent A's log.
    const agentLog = Fs.readFileSync(Path.join(homeA, "agent.log"), "utf8")
    const jsonLines = [hub.stdout(), hub.stderr(), agentLog].flatMap((t) => t.split("\n").filter((l) => l !== ""))
    expect(jsonLines.length).toBeGreaterThan(20)
    const parsed = jsonLines.map((l) => JSON.parse(l) as Record<string, unknown>)
    for (const line of parsed) {
      expect(typeof line["@timestamp"]).toBe("string")
      expect(["debug", "info", "warn", "error", "critical"]).toContain(line["log.level"])
      expect(typeof line.message).toBe("string")
    }
    const connected = parsed.filter((l) => l["event.action"] === "agent-connected" && l["service.name"] === "connect-hub")
    expect(connected.length).toBeGreaterThanOrEqual(2)
    expect(connected.every((l) => l["source.ip"] === "127.0.0.x")).toBe(true)
    expect(parsed.some((l) => l["event.action"] === "api-key-auth-failed" && l["log.level"] === "warn")).toBe(true)
    expect(parsed.some((l) => l["service.name"] === "connect-agent" && l["event.action"] === "agent-connected")).toBe(true)
    expect(hub.stdout()).not.toContain("127.0.0.1\"")

    // B wrote warnings only: no "connected to" (info), but its disconnection (warn).
    expect(agentB.stdout()).not.toContain("connected to")
    expect(agentB.stderr()).toContain("disconnected from the hub")
  }, 900_000)
})
