/**
 * The README scenario, as a new user runs it, all real processes: `connect hub` on its embedded Postgres; agent A
 * exposes this machine's Postgres (127.0.0.1:5432) as `prod-db`; agent B reaches it; `psql` through B's local port runs
 * `select 1` and a 100,000-row `COPY ... TO STDOUT` that matches the direct one byte for byte; and every step is on
 * the hash-chained log, in order. Every command goes through bin/connect, the executable `npx connect` runs.
 */
import * as ChildProcess from "node:child_process"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import Pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { isAlive, killTracked, spawn, track } from "../support/processes.ts"

const LISTENING = /connect hub listening on (http:\/\/127\.0\.0\.1:(\d+))/
const API_KEY = /^\s+(pc_[0-9A-Za-z]{32,})\s*$/m
const COPY = "COPY (select g, md5(g::text), now()::date - g from generate_series(1, 100000) g) TO STDOUT"

let home: string
const pids: Array<number> = []

beforeAll(() => {
  home = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-readme-"))
  Fs.chmodSync(home, 0o755)
})

afterAll(() => {
  for (const pid of pids) if (isAlive(pid)) process.kill(pid, "SIGTERM")
  killTracked()
  Fs.rmSync(home, { recursive: true, force: true })
}, 60_000)

const env = (name: string): NodeJS.ProcessEnv => {
  const e: NodeJS.ProcessEnv = { ...process.env, CONNECT_HOME: Path.join(home, name), CONNECT_NODE: process.execPath }
  delete e.DATABASE_URL
  delete e.CONNECT_ALLOW_INSECURE
  return e
}

const connect = async (name: string, args: ReadonlyArray<string>) => {
  const cli = spawn("bin/connect", args, { env: env(name) })
  const exit = await cli.exited(90_000)
  expect(exit.code, `connect ${args.join(" ")}\n${cli.stdout()}\n${cli.stderr()}`).toBe(0)
  return cli.stdout()
}

/** psql's output for `sql` against 127.0.0.1:`port` (raw bytes, no alignment or headers). */
const psql = (port: number, sql: string) =>
  ChildProcess.execFileSync("psql", ["-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-d", "postgres", "-c", sql], {
    env: { ...process.env, PGCONNECT_TIMEOUT: "10" },
    maxBuffer: 64 * 1024 * 1024,
    timeout: 60_000
  })

const sha = (b: Buffer) => Crypto.createHash("sha256").update(b).digest("hex")

describe("the README scenario", () => {
  it("reaches this machine's Postgres through the hub: select 1 and a byte-exact 100,000-row COPY, all on the log", async () => {
    for (const name of ["hub", "a", "b"]) Fs.mkdirSync(Path.join(home, name), { mode: 0o755 })
    const hub = spawn("bin/connect", ["hub", "--port", "0"], { env: env("hub") })
    const hubUrl = (await hub.waitFor(LISTENING, 120_000))[1]!
    const apiKey = (await hub.waitFor(API_KEY, 5_000))[1]!

    await connect("a", ["up", "--hub", hubUrl, "--api-key", apiKey, "--label", "server", "--detach"])
    pids.push(Number(Fs.readFileSync(Path.join(home, "a", "agent.pid"), "utf8")))
    track(pids[pids.length - 1]!)
    expect(await connect("a", ["expose", "localhost:5432", "--name", "prod-db"])).toContain("exposed prod-db → localhost:5432")

    await connect("b", ["up", "--hub", hubUrl, "--api-key", apiKey, "--label", "laptop", "--detach"])
    pids.push(Number(Fs.readFileSync(Path.join(home, "b", "agent.pid"), "utf8")))
    track(pids[pids.length - 1]!)
    const reached = await connect("b", ["reach", "prod-db", "--port", "0"])
    const port = Number(/^prod-db → 127\.0\.0\.1:(\d+)$/m.exec(reached)?.[1])
    expect(port).toBeGreaterThan(0)

    // Postgres speaks first only after the client's startup packet: early client bytes must not be lost.
    expect(psql(port, "select 1").toString()).toBe("1\n")
    const direct = psql(5432, COPY)
    const relayed = psql(port, COPY)
    expect(direct.toString().split("\n").length).toBe(100_001)
    expect(relayed.length).toBe(direct.length)
    expect(sha(relayed)).toBe(sha(direct))

    // The log, read straight from the hub's embedded Postgres: every step, in order, and the chain intact.
    const { owner } = JSON.parse(Fs.readFileSync(Path.join(home, "hub", "hub", "pg-secrets.json"), "utf8")) as { owner: string }
    const client = new Pg.Client({ host: Path.join(home, "hub", "hub", "pg"), port: 5432, user: "postgres", password: owner, database: "postgres" })
    await client.connect()
    const types = async () =>
      (await client.query<{ type: string; name: string | null }>(
        `select type, coalesce(data->>'name', data->>'serviceName', data->>'label') as name from events order by position`
      )).rows.map((r) => (r.name ? `${r.type}:${r.name}` : r.type))
    // TunnelClosed is appended when psql's connection ends; give the relay a moment to record the last one.
    const deadline = Date.now() + 10_000
    let seen = await types()
    // Two psql sessions went through the tunnel (select 1, the relayed COPY); the direct COPY did not.
    while (seen.filter((t) => t === "TunnelClosed").length < 2 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200))
      seen = await types()
    }
    await client.end()
    const expected = [
      "WorkspaceCreated:default",
      "ApiKeyCreated:bootstrap admin",
      "AgentProvisioned:server",
      "AgentConnected",
      "ServiceExposed:prod-db",
      "AgentProvisioned:laptop",
      "AgentConnected",
      "TunnelOpened:prod-db",
      "TunnelClosed",
      "TunnelOpened:prod-db",
      "TunnelClosed"
    ]
    // In this order, possibly with other events (e.g. reach lookups) between them.
    let at = 0
    for (const type of seen) if (type === expected[at]) at++
    expect({ matched: expected.slice(0, at), seen }).toEqual({ matched: expected, seen })
    expect(seen.filter((t) => t.startsWith("Tunnel")).length).toBe(4)

    const verify = spawn("bin/connect", ["audit", "verify"], { env: env("hub") })
    expect((await verify.exited(60_000)).code).toBe(0)
    expect(verify.stdout()).toMatch(new RegExp(`^OK: ${seen.length} events, hash chain intact`, "m"))

    for (const pid of pids) process.kill(pid, "SIGTERM")
    hub.child.kill("SIGTERM")
    expect(await hub.exited(20_000)).toEqual({ code: 0, signal: null })
  }, 300_000)
})
