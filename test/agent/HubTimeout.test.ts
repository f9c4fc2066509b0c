/**
 * `connect join` and `connect up --rotate-token` against a hub that takes the request and never answers (real
 * `connect` processes, a silent HTTP server on 127.0.0.1): after the client's 15 s the agent must not say it "cannot
 * reach the hub", since the change may have got there and be recorded later; it says so, and what to do (join again:
 * it answers "already joined"; rotate again: the token held would otherwise die at the end of the grace period).
 */
import * as Fs from "node:fs"
import * as Http from "node:http"
import type * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { killTracked, spawn } from "../support/processes.ts"

let home: string
let silent: Http.Server
let port = 0
let received = 0

beforeAll(async () => {
  home = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-jointimeout-"))
  // Reads each request and never answers it.
  silent = Http.createServer((request) => {
    received++
    request.resume()
  })
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve))
  port = (silent.address() as Net.AddressInfo).port
})

afterAll(async () => {
  killTracked()
  silent.closeAllConnections()
  await new Promise<void>((resolve) => silent.close(() => resolve()))
  Fs.rmSync(home, { recursive: true, force: true })
})

/** A provisioned agent's home whose hub is the silent server. */
const agentHome = (name: string) => {
  const dir = Path.join(home, name)
  Fs.mkdirSync(dir, { mode: 0o700 })
  Fs.writeFileSync(Path.join(dir, "agent.json"), JSON.stringify({
    hubUrl: `http://127.0.0.1:${port}`,
    agentId: "0190f5c2-0000-7000-8000-000000000001",
    workspaceId: "0190f5c2-0000-7000-8000-000000000002",
    token: "ab".repeat(32),
    transport: "msgpack",
    exposures: [],
    reaches: {}
  }), { mode: 0o600 })
  return dir
}

/** `connect ARGS` as the agent of `dir`, to its end. */
const connect = async (dir: string, args: ReadonlyArray<string>) => {
  const env: NodeJS.ProcessEnv = { ...process.env, CONNECT_HOME: dir }
  delete env.CONNECT_ALLOW_INSECURE
  const cli = spawn(process.execPath, ["bin/connect.js", ...args], { env })
  const exit = await cli.exited(60_000)
  return { code: exit.code, stderr: cli.stderr() }
}

describe("hub API calls without an answer", () => {
  it("say the change may still be recorded and what to do, not that the hub cannot be reached", async () => {
    // Both at once: each waits out the client's 15 s.
    const [join, rotate] = await Promise.all([
      connect(agentHome("joiner"), ["join", `sh_${"a".repeat(32)}`]),
      connect(agentHome("rotator"), ["up", "--rotate-token"])
    ])
    expect(received).toBe(2)
    for (const run of [join, rotate]) {
      expect(run.code).toBe(1)
      expect(run.stderr).not.toMatch(/cannot reach the hub/)
      expect(run.stderr).toMatch(/no answer from the hub at http:\/\/127\.0\.0\.1:\d+ in 15 s; .*may still be done/)
    }
    expect(join.stderr).toMatch(/run `connect join` again to know/)
    expect(rotate.stderr).toMatch(/grace period only .*run `connect up --rotate-token` again/)
  }, 90_000)
})
