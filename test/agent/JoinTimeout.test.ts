/**
 * `connect join` against a hub that takes the request and never answers (a real `connect` process, a silent HTTP
 * server on 127.0.0.1): after the client's 15 s the agent must not say it "cannot reach the hub", since the join may
 * have got there and be recorded later; it says so, and how to know (joining again answers "already joined").
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

describe("connect join without an answer", () => {
  it("says the join may still be recorded and to join again to know, not that the hub cannot be reached", async () => {
    const agentHome = Path.join(home, "agent")
    Fs.mkdirSync(agentHome, { mode: 0o700 })
    Fs.writeFileSync(Path.join(agentHome, "agent.json"), JSON.stringify({
      hubUrl: `http://127.0.0.1:${port}`,
      agentId: "0190f5c2-0000-7000-8000-000000000001",
      workspaceId: "0190f5c2-0000-7000-8000-000000000002",
      token: "ab".repeat(32),
      transport: "msgpack",
      exposures: [],
      reaches: {}
    }), { mode: 0o600 })
    const env: NodeJS.ProcessEnv = { ...process.env, CONNECT_HOME: agentHome }
    delete env.CONNECT_ALLOW_INSECURE
    const cli = spawn(process.execPath, ["bin/connect.js", "join", `sh_${"a".repeat(32)}`], { env })
    const exit = await cli.exited(60_000)
    expect(received).toBe(1)
    expect(exit.code).toBe(1)
    expect(cli.stderr()).not.toMatch(/cannot reach the hub/)
    expect(cli.stderr()).toMatch(/no answer from the hub at http:\/\/127\.0\.0\.1:\d+ in 15 s; .*may still be done/)
    expect(cli.stderr()).toMatch(/run `connect join` again to know/)
  }, 90_000)
})
