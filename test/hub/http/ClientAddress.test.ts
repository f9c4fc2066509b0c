import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import * as ClientAddress from "../../../hub/http/ClientAddress.ts"
import * as HubConfig from "../../../hub/HubConfig.ts"

describe("ClientAddress", () => {
  it.effect("parses --trust-proxy blocks and refuses anything that is not one", () =>
    Effect.gen(function*() {
      expect(yield* ClientAddress.parseCidrs("10.0.0.0/8, 127.0.0.1,fd00::/8")).toEqual([
        "10.0.0.0/8",
        "127.0.0.1/32",
        "fd00::/8"
      ])
      for (const bad of ["10.0.0.0/33", "example.com", "10.0.0.0/8/1", "::/129", "10.0.0.0/x"]) {
        expect(Exit.isFailure(yield* Effect.exit(ClientAddress.parseCidrs(bad)))).toBe(true)
      }
    }))

  it("believes X-Forwarded-For only from a trusted peer, walking it from the right past trusted hops", () => {
    const trusted = ClientAddress.make(["127.0.0.0/8", "10.0.0.0/8", "fd00::/8"])
    const none = ClientAddress.make()
    expect(ClientAddress.resolve(none, "127.0.0.1", "203.0.113.9")).toBe("127.0.0.1")
    expect(ClientAddress.resolve(trusted, "::ffff:127.0.0.1", "203.0.113.9")).toBe("203.0.113.9")
    expect(ClientAddress.resolve(trusted, "192.0.2.1", "203.0.113.9")).toBe("192.0.2.1")
    expect(ClientAddress.resolve(trusted, "127.0.0.1", "6.6.6.6, 203.0.113.9, 10.0.0.2")).toBe("203.0.113.9")
    expect(ClientAddress.resolve(trusted, "127.0.0.1", ["6.6.6.6", "10.0.0.3, 10.0.0.2"])).toBe("6.6.6.6")
    expect(ClientAddress.resolve(trusted, "127.0.0.1", "[2001:db8::7]:443, fd00::1")).toBe("2001:db8::7")
    expect(ClientAddress.resolve(trusted, "127.0.0.1", "203.0.113.9:5000")).toBe("203.0.113.9")
    // Garbage ends the walk at the last hop a trusted proxy vouched for.
    expect(ClientAddress.resolve(trusted, "127.0.0.1", "203.0.113.9, junk, 10.0.0.2")).toBe("10.0.0.2")
    expect(ClientAddress.resolve(trusted, "127.0.0.1", "")).toBe("127.0.0.1")
    expect(ClientAddress.resolve(trusted, "127.0.0.1", undefined)).toBe("127.0.0.1")
    expect(ClientAddress.withPort("2001:db8::7", 443)).toBe("[2001:db8::7]:443")
  })
})

describe("connect hub's plain-HTTP warning", () => {
  it("warns for a non-loopback host without TLS only", () => {
    const tls = { certPath: "/c", cert: Buffer.alloc(0), key: Buffer.alloc(0) }
    expect(HubConfig.insecureWarning({ host: "0.0.0.0" })).toContain("without TLS")
    expect(HubConfig.insecureWarning({ host: "::" })).toContain("without TLS")
    expect(HubConfig.insecureWarning({ host: "192.168.1.10" })).toContain("without TLS")
    expect(HubConfig.insecureWarning({ host: "0.0.0.0", tls })).toBeUndefined()
    expect(HubConfig.insecureWarning({ host: "127.0.0.1" })).toBeUndefined()
    expect(HubConfig.insecureWarning({ host: "localhost" })).toBeUndefined()
    expect(HubConfig.insecureWarning({ host: "::1" })).toBeUndefined()
  })
})

describe("ClientAddress.limitKey", () => {
  it("counts IPv4 addresses one by one and IPv6 ones by their /64", () => {
    expect(ClientAddress.limitKey("203.0.113.7")).toBe("203.0.113.7")
    expect(ClientAddress.limitKey("::ffff:203.0.113.7")).toBe("203.0.113.7")
    expect(ClientAddress.limitKey("2001:db8:1:2::1")).toBe("2001:db8:1:2::/64")
    expect(ClientAddress.limitKey("2001:db8:1:2:aaaa:bbbb:cccc:dddd")).toBe("2001:db8:1:2::/64")
    expect(ClientAddress.limitKey("[2001:0db8:0001:0002::ffff]:443")).toBe("2001:db8:1:2::/64")
    expect(ClientAddress.limitKey("::1")).toBe("0:0:0:0::/64")
    expect(ClientAddress.limitKey("fe80::1")).toBe("fe80:0:0:0::/64")
  })
})
