import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import * as HubApi from "../../agent/HubApi.ts"

/** A resolver that answers from a table, as a DNS server the attacker controls would. */
const resolver = (table: Record<string, ReadonlyArray<string>>): HubApi.Resolve => (host) =>
  table[host] === undefined
    ? Effect.fail(new HubApi.HubUrlError({ message: `cannot resolve ${host}` }))
    : Effect.succeed(table[host]!)

const check = (url: string, table: Record<string, ReadonlyArray<string>> = {}, env: NodeJS.ProcessEnv = {}) =>
  Effect.exit(HubApi.checkHubUrl(url, env, resolver(table)))

describe("the hub URL check", () => {
  it.effect("allows plain http:// only when every address the host resolves to is loopback", () =>
    Effect.gen(function*() {
      expect(yield* check("http://127.0.0.1:3001")).toEqual(Exit.succeed("http://127.0.0.1:3001"))
      expect(yield* check("http://[::1]:3001")).toEqual(Exit.succeed("http://[::1]:3001"))
      expect(yield* check("http://127.5.6.7:3001")).toEqual(Exit.succeed("http://127.5.6.7:3001"))
      expect(yield* check("http://localhost:3001", { localhost: ["127.0.0.1", "::1"] })).toEqual(
        Exit.succeed("http://localhost:3001")
      )
      // A *.localhost name answered by an upstream DNS server with a public address is not loopback.
      const evil = yield* check("http://evil.localhost:3001", { "evil.localhost": ["203.0.113.5"] })
      expect(Exit.isFailure(evil) && JSON.stringify(evil.cause)).toContain("refusing plain http://")
      const mixed = yield* check("http://localhost:3001", { localhost: ["127.0.0.1", "10.0.0.8"] })
      expect(Exit.isFailure(mixed)).toBe(true)
      expect(Exit.isFailure(yield* check("http://nowhere.localhost:3001"))).toBe(true)
      expect(Exit.isFailure(yield* check("http://0.0.0.0:3001"))).toBe(true)
      expect(Exit.isFailure(yield* check("http://[::ffff:10.0.0.1]:3001"))).toBe(true)
      expect(yield* check("http://[::ffff:127.0.0.1]:3001")).toEqual(Exit.succeed("http://[::ffff:7f00:1]:3001"))
      // TLS and the explicit opt-out need no lookup.
      expect(yield* check("https://evil.localhost:3001")).toEqual(Exit.succeed("https://evil.localhost:3001"))
      expect(yield* check("http://hub.lan:3001", {}, { CONNECT_ALLOW_INSECURE: "true" })).toEqual(
        Exit.succeed("http://hub.lan:3001")
      )
    }))

  it.effect("resolves with the system resolver by default", () =>
    Effect.gen(function*() {
      expect(yield* Effect.exit(HubApi.checkHubUrl("http://localhost:3001", {}))).toEqual(Exit.succeed("http://localhost:3001"))
    }))
})
