/**
 * Addresses are masked to their /24 or /48 in the audit CLI's output, in the table and in --json/--jsonl alike.
 */
import { describe, expect, it } from "@effect/vitest"
import { maskData, maskIp, maskMeta, maskPeer, NOT_AN_ADDRESS, showIp } from "../../core/Mask.ts"

describe("maskIp", () => {
  it("keeps the /24 of an IPv4 address", () => {
    expect(maskIp("203.0.113.77")).toBe("203.0.113.x")
    expect(maskIp("10.0.0.1")).toBe("10.0.0.x")
  })

  it("keeps the /48 of an IPv6 address, however it is written", () => {
    expect(maskIp("2001:db8:85a3:1234:5678::1")).toBe("2001:db8:85a3::/48")
    expect(maskIp("2001:0db8:85a3::8a2e:370:7334")).toBe("2001:db8:85a3::/48")
    expect(maskIp("2001:db8::1")).toBe("2001:db8:0::/48")
    expect(maskIp("::1")).toBe("0:0:0::/48")
    expect(maskIp("fe80::1%eth0")).toBe("fe80:0:0::/48")
  })

  it("masks an IPv4-mapped address as IPv4", () => {
    expect(maskIp("::ffff:198.51.100.23")).toBe("::ffff:198.51.100.x")
  })

  it("never shows a recorded value that is not an address", () => {
    expect(maskIp("not-an-ip 203.0.113.7")).toBe(NOT_AN_ADDRESS)
    expect(maskIp("")).toBe(NOT_AN_ADDRESS)
  })

  it("masks every address field of data and meta and leaves the rest", () => {
    expect(maskData({ ip: "203.0.113.7", previousIp: "198.51.100.1", newIp: "2001:db8:1:2::3", reason: "x" })).toEqual({
      ip: "203.0.113.x",
      previousIp: "198.51.100.x",
      newIp: "2001:db8:1::/48",
      reason: "x"
    })
    expect(maskMeta({ actor: { kind: "agent" }, sourceIp: "203.0.113.7" })).toEqual({
      actor: { kind: "agent" },
      sourceIp: "203.0.113.x"
    })
    expect(maskMeta({ actor: { kind: "admin" } })).toEqual({ actor: { kind: "admin" } })
  })
})

describe("maskPeer", () => {
  it("masks a socket's peer and drops its port", () => {
    expect(maskPeer("203.0.113.77:51234")).toBe("203.0.113.x")
    expect(maskPeer("[2001:db8:85a3::1]:443")).toBe("2001:db8:85a3::/48")
    expect(maskPeer("2001:db8:85a3::1")).toBe("2001:db8:85a3::/48")
    expect(maskPeer("::ffff:198.51.100.23")).toBe("::ffff:198.51.100.x")
    expect(maskPeer("memory")).toBe("memory")
    expect(maskPeer("evil 10.0.0.1:1")).toBe(NOT_AN_ADDRESS)
  })
})

describe("showIp", () => {
  it("masks unless revealed", () => {
    expect(showIp("203.0.113.77", false)).toBe("203.0.113.x")
    expect(showIp("203.0.113.77", true)).toBe("203.0.113.77")
    expect(showIp(null, false)).toBe(null)
  })
})
