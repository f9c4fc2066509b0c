/**
 * The hub masks every address a workspace key reads (audit/Reveal.ts), and the CLI and the console mask what they show
 * again: an address masked once stays as it is, never "(not an address)".
 */
import { describe, expect, it } from "@effect/vitest"
import { maskData, maskIp, maskMeta, showIp } from "../../../core/Mask.ts"

describe("masking what the hub masked already", () => {
  it("leaves a masked IPv4, IPv4-mapped and IPv6 address as it is", () => {
    for (const address of ["203.0.113.77", "::ffff:198.51.100.23", "2001:db8:85a3:1234::9", "::1", "fe80::1%eth0", "nope"]) {
      const once = maskIp(address)
      expect(maskIp(once), address).toBe(once)
      expect(showIp(once, false), address).toBe(once)
    }
    expect(maskData({ ip: "203.0.113.x", newIp: "2001:db8:85a3::/48" })).toEqual({ ip: "203.0.113.x", newIp: "2001:db8:85a3::/48" })
    expect(maskMeta({ sourceIp: "127.0.0.x" })).toEqual({ sourceIp: "127.0.0.x" })
  })

  it("still refuses what only looks masked in part", () => {
    expect(maskIp("203.0.113.x.evil")).toBe("(not an address)")
    expect(maskIp("203.0.113.x 10.0.0.1")).toBe("(not an address)")
  })
})
