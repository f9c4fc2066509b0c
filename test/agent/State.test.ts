/**
 * The agent state file: private (0600), replaced atomically, and the source of stable reach ports.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import * as State from "../../agent/State.ts"

const dirs: Array<string> = []
const tempHome = () => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-state-"))
  dirs.push(dir)
  return Path.join(dir, "home")
}

afterEach(() => {
  for (const dir of dirs.splice(0)) Fs.rmSync(dir, { recursive: true, force: true })
})

const sample: State.AgentState = {
  hubUrl: "https://hub.example.com",
  agentId: "agent-1",
  workspaceId: "ws-1",
  token: "f".repeat(64),
  tokenExpiresAt: "2030-01-01T00:00:00.000Z",
  transport: "msgpack",
  label: "laptop",
  exposures: [{ name: "prod-db", host: "localhost", port: 5432 }],
  reaches: { redis: 16379 }
}

describe("State", () => {
  it.effect("a home never provisioned has no state", () =>
    Effect.gen(function*() {
      expect(Option.isNone(yield* State.load(tempHome()))).toBe(true)
    }))

  it.effect("round-trips every field through agent.json, created with mode 0600 in a 0700 home", () =>
    Effect.gen(function*() {
      const home = tempHome()
      yield* State.save(home, sample)
      expect(yield* State.load(home)).toEqual(Option.some(sample))
      expect(Fs.statSync(State.paths(home).state).mode & 0o777).toBe(0o600)
      expect(Fs.statSync(home).mode & 0o777).toBe(0o700)
    }))

  it.effect("keeps mode 0600 when it replaces a file someone loosened, and leaves no temporary file", () =>
    Effect.gen(function*() {
      const home = tempHome()
      yield* State.save(home, sample)
      Fs.chmodSync(State.paths(home).state, 0o644)
      yield* State.save(home, { ...sample, label: "desk" })
      expect(Fs.statSync(State.paths(home).state).mode & 0o777).toBe(0o600)
      expect(Fs.readdirSync(home)).toEqual(["agent.json"])
    }))

  it.effect("replaces the file by rename: a reader holding the old file sees it whole, the path sees the new one", () =>
    Effect.gen(function*() {
      const home = tempHome()
      yield* State.save(home, sample)
      const before = Fs.statSync(State.paths(home).state).ino
      const oldFd = Fs.openSync(State.paths(home).state, "r")
      yield* State.save(home, { ...sample, token: "e".repeat(64) })
      // A new inode: the old file was never written in place (a crash mid-write cannot truncate the token).
      expect(Fs.statSync(State.paths(home).state).ino).not.toBe(before)
      expect(JSON.parse(Fs.readFileSync(oldFd, "utf8")).token).toBe("f".repeat(64))
      Fs.closeSync(oldFd)
      expect(Option.getOrThrow(yield* State.load(home)).token).toBe("e".repeat(64))
    }))

  it.effect("a corrupt file is an error that does not quote its content (the token)", () =>
    Effect.gen(function*() {
      const home = tempHome()
      Fs.mkdirSync(home, { recursive: true })
      Fs.writeFileSync(State.paths(home).state, `{"token":"${"a".repeat(64)}"`)
      const error = yield* Effect.flip(State.load(home))
      expect(error.reason).toBe("Corrupt")
      expect(error.message).not.toContain("a".repeat(64))
    }))

  it.effect("update re-reads the file, so it keeps a token another process stored meanwhile", () =>
    Effect.gen(function*() {
      const home = tempHome()
      yield* State.save(home, sample)
      yield* State.save(home, { ...sample, token: "d".repeat(64) })
      const next = yield* State.update(home, (s) => State.withExposure(s, { name: "redis", host: "127.0.0.1", port: 6379 }))
      expect(next.token).toBe("d".repeat(64))
      expect(Option.getOrThrow(yield* State.load(home)).exposures.map((e) => e.name)).toEqual(["prod-db", "redis"])
    }))

  it.effect("reach ports are stable: the stored port is reused unless another one is asked for", () =>
    Effect.gen(function*() {
      const home = tempHome()
      yield* State.save(home, sample)
      yield* State.update(home, (s) => State.withReach(s, "prod-db", 15432))
      const reloaded = Option.getOrThrow(yield* State.load(home))
      expect(State.reachPort(reloaded, "prod-db")).toBe(15432)
      expect(State.reachPort(reloaded, "prod-db", 0)).toBe(15432)
      expect(State.reachPort(reloaded, "prod-db", 25432)).toBe(25432)
      expect(State.reachPort(reloaded, "never-reached")).toBe(0)
      expect(State.withoutReach(reloaded, "prod-db").reaches).toEqual({ redis: 16379 })
    }))

  it("CONNECT_HOME picks the home, else ~/.connect", () => {
    expect(State.home({ CONNECT_HOME: "/srv/agent" })).toBe("/srv/agent")
    expect(State.home({})).toBe(Path.join(Os.homedir(), ".connect"))
  })
})
