/**
 * `--api-key` / CONNECT_API_KEY on every command that calls the hub's API with a key (core/ApiKeyOption.ts): a value
 * that cannot be a key (a pasted line break, a quote, a truncated key, 1 MB) is one line saying so and exit 2, before
 * anything is sent; the value is never echoed. `connect up` reads CONNECT_API_KEY as the other commands do.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { describe, expect, it } from "vitest"
import { apiKeyProblem } from "../../core/ApiKeyOption.ts"

const KEY = `pc_${"A1b2C3d4E5".repeat(4)}`

describe("apiKeyProblem", () => {
  it("accepts a key's shape and names what is wrong otherwise, without the key", () => {
    expect(apiKeyProblem(KEY)).toBeUndefined()
    for (const bad of [`${KEY}\n`, ` ${KEY}`, `${KEY}"`, "pc_short", "sh_" + KEY.slice(3), `pc_${"a".repeat(1_000_000)}`, "pc_\u0000" + KEY.slice(3), `${KEY}\uD800`, ""]) {
      const problem = apiKeyProblem(bad)
      expect(problem, JSON.stringify(bad.slice(0, 60))).toBeDefined()
      expect(problem).not.toContain(KEY.slice(3, 12))
    }
    expect(apiKeyProblem(`${KEY}\n`)).toMatch(/line break/)
  })
})

describe("connect … --api-key", () => {
  const home = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-apikey-"))
  // Port 9 on loopback: nothing is sent if the key is refused first; if it were sent, the error would be another one.
  const hub = "http://127.0.0.1:9"
  const run = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
    ChildProcess.spawnSync(Path.resolve("bin/connect"), args, {
      env: { PATH: process.env.PATH ?? "", HOME: home, CONNECT_HOME: Path.join(home, ".connect"), ...env },
      encoding: "utf8",
      timeout: 60_000
    })

  it.each([
    ["share list", ["share", "list", "--hub", hub]],
    ["link list", ["link", "list", "--hub", hub]],
    ["hub apikey list", ["hub", "apikey", "list", "--workspace", "00000000-0000-7000-8000-000000000001", "--hub", hub]],
    ["audit", ["audit", "--hub", hub]],
    ["up", ["up", "--hub", hub]]
  ])("%s: a key with a line break in CONNECT_API_KEY is exit 2 in one line, not sent, not echoed", (_, args) => {
    const r = run(args, { CONNECT_API_KEY: `${KEY}\n` })
    expect(r.status, r.stderr).toBe(2)
    expect(r.stdout + r.stderr).toMatch(/line break/)
    expect(r.stdout + r.stderr).not.toMatch(/TypeError|unexpected failure|at .*\.ts:\d+/)
    expect(r.stdout + r.stderr).not.toContain(KEY.slice(3))
  })

  it("up reads CONNECT_API_KEY: with it, a first start tries to provision (and says the hub is unreachable)", () => {
    const r = run(["up", "--hub", hub], { CONNECT_API_KEY: KEY })
    expect(r.status).not.toBe(0)
    expect(r.stdout + r.stderr).not.toMatch(/--api-key KEY/)
    expect(r.stdout + r.stderr).toMatch(/ECONNREFUSED|unreachable|could not reach/i)
  })
})
