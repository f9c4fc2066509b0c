/**
 * The agent commands as a user types them (real `connect` processes): bad usage exits 2 with the usage line, an
 * insecure hub is refused with exit 2, and commands without credentials say how to provision, exit 1.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Option } from "effect"
import { parseTarget } from "../../agent/Cli.ts"
import { killTracked, spawn } from "../support/processes.ts"

let home: string
let env: NodeJS.ProcessEnv

beforeAll(() => {
  home = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-cli-"))
  Fs.chmodSync(home, 0o755)
  env = { ...process.env, CONNECT_HOME: Path.join(home, "agent") }
  delete env.CONNECT_ALLOW_INSECURE
})

afterAll(() => {
  killTracked()
  Fs.rmSync(home, { recursive: true, force: true })
})

const connect = async (args: ReadonlyArray<string>, extra: NodeJS.ProcessEnv = {}) => {
  const cli = spawn(process.execPath, ["bin/connect.js", ...args], { env: { ...env, ...extra } })
  const exit = await cli.exited(30_000)
  return { code: exit.code, stdout: cli.stdout(), stderr: cli.stderr() }
}

describe("agent CLI", () => {
  it("parses HOST:PORT, [IPv6]:PORT and a bare PORT", () => {
    expect(parseTarget("localhost:5432")).toEqual(Option.some({ host: "localhost", port: 5432 }))
    expect(parseTarget("[::1]:6379")).toEqual(Option.some({ host: "::1", port: 6379 }))
    expect(parseTarget("3306")).toEqual(Option.some({ host: "localhost", port: 3306 }))
    expect(Option.isNone(parseTarget("db:0"))).toBe(true)
    expect(Option.isNone(parseTarget("db:70000"))).toBe(true)
    expect(Option.isNone(parseTarget("db:postgres"))).toBe(true)
  })

  it("a bad --port exits 2 with the reason and the usage", async () => {
    const r = await connect(["reach", "prod-db", "--port", "70000"])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("--port must be a whole number from 0 to 65535")
    expect(r.stderr).toContain("Usage: connect reach [--port integer] [--check] [--json] <NAME>")
  })

  it("a target that is not HOST:PORT, or a bad --name, exits 2 with the usage", async () => {
    const target = await connect(["expose", "db:postgres"])
    expect(target.code).toBe(2)
    expect(target.stderr).toContain("'db:postgres' is not HOST:PORT")
    expect(target.stderr).toContain("Usage: connect expose [--name text] <HOST:PORT>")
    const name = await connect(["expose", "localhost:5432", "--name", "no spaces"])
    expect(name.code).toBe(2)
    expect(name.stderr).toContain("is not a service name")
  }, 90_000)

  it("--ttl out of 5m–30d or malformed exits 2 naming the range; without --api-key it is refused", async () => {
    for (const ttl of ["4m", "31d", "soon"]) {
      const r = await connect(["up", "--hub", "https://hub.example.invalid", "--api-key", `pc_${"x".repeat(40)}`, "--ttl", ttl])
      expect(r.code, ttl).toBe(2)
      expect(r.stderr, ttl).toContain("give one from 5m to 30d (minutes m, hours h, days d, e.g. 15m, 12h, 7d)")
      expect(r.stderr).not.toContain("x".repeat(40))
    }
    const keyless = await connect(["up", "--hub", "https://hub.example.invalid", "--ttl", "15m"])
    expect(keyless.code).toBe(1)
    expect(keyless.stderr.trim()).toBe("connect: --ttl sets the token lifetime when the agent is provisioned: give --api-key with it")
  }, 120_000)

  it("an unknown --transport exits 2", async () => {
    const r = await connect(["up", "--transport", "carrier-pigeon"])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("Usage: connect up")
  })

  it("refuses plain http:// to a non-loopback hub (exit 2) unless CONNECT_ALLOW_INSECURE=true", async () => {
    const refused = await connect(["up", "--hub", "http://hub.example.invalid:3001", "--api-key", `pc_${"x".repeat(40)}`])
    expect(refused.code).toBe(2)
    expect(refused.stderr).toContain("refusing plain http:// to hub.example.invalid:3001")
    expect(refused.stderr).toContain("CONNECT_ALLOW_INSECURE=true")
    expect(refused.stderr).not.toContain("x".repeat(40))
    const allowed = await connect(
      ["up", "--hub", "http://hub.example.invalid:3001", "--api-key", `pc_${"x".repeat(40)}`],
      { CONNECT_ALLOW_INSECURE: "true" }
    )
    // Past the TLS rule: it now fails on the (unresolvable) host, with exit 1.
    expect(allowed.code).toBe(1)
    expect(allowed.stderr).toContain("cannot reach the hub at http://hub.example.invalid:3001")
    expect(allowed.stderr).not.toContain("x".repeat(40))
  }, 90_000)

  it("without credentials, up/expose/reach/status/services say how to provision, exit 1", async () => {
    for (const args of [["up"], ["expose", "localhost:5432"], ["reach", "prod-db"], ["status"], ["services", "--json"]]) {
      const r = await connect(args)
      expect({ args, code: r.code }).toEqual({ args, code: 1 })
      expect(r.stderr).toContain("run `connect up --hub URL --api-key KEY` first")
    }
    // Five process starts; on a loaded 2-core machine each can take ~10 s.
  }, 180_000)

  it("`connect daemon install --print` prints the unit for this CONNECT_HOME and writes nothing", async () => {
    const r = await connect(["daemon", "install", "--print"], { XDG_CONFIG_HOME: Path.join(home, "config") })
    expect(r.code).toBe(0)
    expect(r.stdout).toContain(`Environment="CONNECT_HOME=${Path.join(home, "agent")}"`)
    expect(r.stdout).toContain(`Environment="CONNECT_NODE=${process.execPath}"`)
    expect(r.stdout).toMatch(/ExecStart=".*\/bin\/connect" "up"/)
    expect(r.stdout).toContain("Restart=always")
    expect(Fs.existsSync(Path.join(home, "config"))).toBe(false)
  })

  it("bare `connect HOST:PORT` is `connect expose HOST:PORT`, and CONNECT_HUB_URL stands for a first `up --hub`", async () => {
    // Each a whole CLI start: generous on a loaded 2-core machine.
    const run = async (args: ReadonlyArray<string>, extra: NodeJS.ProcessEnv = {}) => {
      const cli = spawn(process.execPath, ["bin/connect.js", ...args], { env: { ...env, ...extra } })
      const exit = await cli.exited(150_000)
      return { code: exit.code, stderr: cli.stderr() }
    }
    const [bare, fromEnv] = await Promise.all([
      run(["localhost:5432"]),
      run(["up", "--api-key", `pc_${"x".repeat(40)}`], { CONNECT_HUB_URL: "http://hub.example.invalid:3001" })
    ])
    // What `connect expose localhost:5432` says without credentials.
    expect(bare).toEqual({ code: 1, stderr: expect.stringContaining("run `connect up --hub URL --api-key KEY` first") })
    // The hub came from the environment: its URL is checked (and refused over plain http).
    expect(fromEnv.code).toBe(2)
    expect(fromEnv.stderr).toContain("refusing plain http:// to hub.example.invalid:3001")
  }, 200_000)
})
