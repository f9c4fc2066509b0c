/**
 * `connect hub` as a real process under the seeded fuzzer: agents provisioned through its API collude and send
 * random frames of both transports, strangers send garbage before and after `Hello`, raw bytes follow an upgrade,
 * and random HTTP requests hit `/v1/*` and `/health`. The process must stay up, close connections only with protocol
 * codes, answer HTTP below 500 (503 only as documented) with JSON on every 4xx, and still serve `/health`. (The memory
 * bound is asserted in process, by relay.fuzz.test.ts: this process's RSS is kept high on purpose by the launcher.)
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Effect, Exit, Scope } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { makeTestDatabaseUrl } from "../support/TestDatabase.ts"
import { isAlive, killTracked, spawn, type Spawned } from "../support/processes.ts"
import * as Campaign from "./Campaign.ts"
import * as Fuzzer from "./Fuzzer.ts"

const LISTENING = /connect hub listening on (http:\/\/127\.0\.0\.1:(\d+))/
const API_KEY = /^\s+(pc_[0-9A-Za-z]{32,})\s*$/m

let scope: Scope.CloseableScope
let home: string
let hub: Spawned
let httpUrl: string
let port: number
let apiKey: string

beforeAll(async () => {
  scope = Effect.runSync(Scope.make())
  const databaseUrl = await Effect.runPromise(Scope.extend(makeTestDatabaseUrl, scope))
  home = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-fuzz-"))
  Fs.chmodSync(home, 0o755)
  const env: NodeJS.ProcessEnv = { ...process.env, CONNECT_HOME: home, DATABASE_URL: databaseUrl }
  delete env.CONNECT_ALLOW_INSECURE
  hub = spawn(process.execPath, ["bin/connect.js", "hub", "--port", "0"], { env })
  const listening = await hub.waitFor(LISTENING, 90_000)
  httpUrl = listening[1]!
  port = Number(listening[2])
  apiKey = (await hub.waitFor(API_KEY, 5_000))[1]!
}, 120_000)

afterAll(async () => {
  if (hub && isAlive(hub.pid)) {
    hub.child.kill("SIGTERM")
    await hub.exited(15_000).catch(() => undefined)
  }
  killTracked()
  if (scope) await Effect.runPromise(Scope.close(scope, Exit.void))
  if (home) Fs.rmSync(home, { recursive: true, force: true })
}, 60_000)

/** Provisions an agent through the API, as `connect up --api-key` does; resolves its token. */
const provision = async (label: string): Promise<string> => {
  const response = await fetch(`${httpUrl}/v1/agents`, {
    method: "POST",
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
    body: JSON.stringify({ label })
  })
  const body = await response.text()
  expect(response.status, `POST /v1/agents: ${body}\n${hub.stderr()}`).toBe(201)
  return (JSON.parse(body) as { token: string }).token
}

describe("connect hub under the fuzzer (real process)", () => {
  const seed = Fuzzer.seedFromEnv()
  const duration = Fuzzer.durationFromEnv(4)

  it(`seed ${seed}, ${duration / 1000} s: never exits, protocol closes and JSON 4xx only, /health still 200`, async () => {
    console.log(`hub fuzz: FUZZ_SEED=${seed} FUZZ_SECONDS=${duration / 1000} (hub pid ${hub.pid})`)
    const colluders = [await provision("fz-0"), await provision("fz-1")] as const
    const stranger = await provision("fz-stranger")
    const httpAgent = await provision("fz-http")
    const rng = Fuzzer.makeRng(seed)
    const findings = Campaign.makeFindings()
    const deadline = Date.now() + duration
    const url = `ws://127.0.0.1:${port}/v1/agent`
    const common = { url, deadline, findings }
    await Promise.all([
      Campaign.colludingPair({ ...common, rng: rng.fork("pair"), tokens: colluders, label: "fz-pair" }),
      Campaign.strangers({ ...common, rng: rng.fork("strangers"), token: stranger, label: "stranger" }),
      Campaign.rawUpgrades({ ...common, rng: rng.fork("raw"), port, path: "/v1/agent" }),
      Campaign.httpRequests({
        rng: rng.fork("http"),
        deadline,
        findings,
        port,
        keys: { apiKey, agentToken: httpAgent },
        concurrency: 2
      })
    ])
    console.log(`hub fuzz: ${Campaign.summary(findings)}`)

    expect(isAlive(hub.pid), `FUZZ_SEED=${seed}: the hub exited\n${hub.stderr()}`).toBe(true)
    expect(hub.child.exitCode).toBeNull()
    const health = await fetch(`${httpUrl}/health`)
    expect(health.status).toBe(200)
    expect(await health.json()).toEqual({ status: "ok" })
    expect(findings.problems, `FUZZ_SEED=${seed}`).toEqual([])
    // An exception inside the hub closes that one connection (1011) and is reported on stderr: neither may happen.
    expect(hub.stderr(), `FUZZ_SEED=${seed}`).not.toMatch(/internal error/)
    expect(findings.requests).toBeGreaterThan(10)
    expect(findings.closeCodes.get(1002) ?? 0).toBeGreaterThan(0)
  }, duration + 60_000)
})
