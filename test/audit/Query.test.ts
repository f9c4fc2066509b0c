/**
 * The audit filters as typed: times, types and groups, addresses and prefixes, ids and names; every hostile value
 * (NUL, a lone surrogate, 1 MB, a malformed time or address, an unknown type) is a clear AuditQueryError naming
 * its option, and the --follow matcher applies the same rules as the query.
 */
import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import { type Filters, matches, parseFilters, type RawFilters, type Resolved } from "../../audit/Query.ts"

const now = new Date("2026-11-30T12:00:00Z")
const parse = (raw: RawFilters) => parseFilters(raw, now)
const ok = (raw: RawFilters): Filters => Either.getOrThrow(parse(raw))
const error = (raw: RawFilters): string => {
  const result = parse(raw)
  if (Either.isRight(result)) throw new Error(`expected an error, got ${JSON.stringify(result.right)}`)
  return result.left.message
}

describe("parseFilters", () => {
  it("reads relative and absolute times, UTC without an offset", () => {
    expect(ok({ since: "2h" }).since).toEqual(new Date("2026-11-30T10:00:00Z"))
    expect(ok({ since: "7d" }).since).toEqual(new Date("2026-11-23T12:00:00Z"))
    expect(ok({ since: "30m", until: "90s" })).toMatchObject({
      since: new Date("2026-11-30T11:30:00Z"),
      until: new Date("2026-11-30T11:58:30Z")
    })
    expect(ok({ since: "2026-11-29" }).since).toEqual(new Date("2026-11-29T00:00:00Z"))
    expect(ok({ since: "2026-11-29T14:00" }).since).toEqual(new Date("2026-11-29T14:00:00Z"))
    expect(ok({ until: "2026-11-29T14:00:05.250+02:00" }).until).toEqual(new Date("2026-11-29T12:00:05.250Z"))
  })

  it("refuses a malformed time, an impossible date, and --since after --until", () => {
    expect(error({ since: "yesterday" })).toMatch(/^--since: "yesterday" is not a time/)
    expect(error({ since: "2026-02-30" })).toMatch(/^--since: .* is not a time/)
    expect(error({ until: "2026-11-29T25:00" })).toMatch(/^--until: .* is not a time/)
    expect(error({ since: "2h", until: "3h" })).toBe("--since: is after --until")
  })

  it("expands groups and lists of types, and names the groups for an unknown one", () => {
    expect(ok({ type: "auth" }).types).toEqual(["AgentAuthFailed", "ApiKeyAuthFailed", "ConsoleSignInFailed"])
    expect(ok({ type: "ReachDenied,link" }).types).toEqual(["ReachDenied", "LinkCreated", "LinkRevoked", "LinkAccessed"])
    expect(error({ type: "Nope" })).toMatch(/^--type: unknown type or group "Nope"; groups: agent, service, tunnel/)
  })

  it("reads addresses, prefixes and the masked form the table prints", () => {
    expect(ok({ ip: "203.0.113.7" }).ip).toEqual({ address: "203.0.113.7", bits: 32, family: "ipv4" })
    expect(ok({ ip: "203.0.113.0/24" }).ip).toEqual({ address: "203.0.113.0", bits: 24, family: "ipv4" })
    expect(ok({ ip: "203.0.113.x" }).ip).toEqual({ address: "203.0.113.0", bits: 24, family: "ipv4" })
    expect(ok({ ip: "2001:db8:85a3::/48" }).ip).toEqual({ address: "2001:db8:85a3::", bits: 48, family: "ipv6" })
    expect(error({ ip: "203.0.113.256" })).toMatch(/^--ip: "203.0.113.256" is not an address or prefix/)
    expect(error({ ip: "203.0.113.0/33" })).toBe('--ip: prefix length of "203.0.113.0/33" must be 0 to 32')
    expect(error({ ip: "1.2.3.4/8/8" })).toMatch(/^--ip: .* is not an address or prefix/)
    expect(error({ ip: "1.2.3.4/abc" })).toMatch(/^--ip: prefix length/)
  })

  it("takes ids in any case and names, and refuses what is neither", () => {
    const id = "0193A3C1-7F2E-7C3A-9B1D-2F4E5A6B7C8D"
    expect(ok({ workspace: id, agent: id, service: id })).toMatchObject({
      workspace: id.toLowerCase(),
      agent: id.toLowerCase(),
      service: id.toLowerCase()
    })
    expect(ok({ agent: "build box", service: "prod-db" })).toMatchObject({ agent: "build box", service: "prod-db" })
    expect(error({ workspace: "acme" })).toBe('--workspace: "acme" is not a workspace id (a UUID)')
    expect(error({ service: "prod db!" })).toBe('--service: "prod db!" is neither a service id nor a service name')
    expect(error({ outcome: "maybe" })).toBe("--outcome: must be allowed or denied")
  })

  it("refuses NUL, control characters, lone surrogates and 1 MB values in every option", () => {
    for (const option of ["since", "until", "type", "workspace", "agent", "service", "outcome", "ip"] as const) {
      expect(error({ [option]: "a\u0000b" })).toBe(`--${option}: contains a control character`)
      expect(error({ [option]: "ab\uD800" })).toBe(`--${option}: contains a lone surrogate (not valid Unicode)`)
      expect(error({ [option]: "\uDC00ab" })).toBe(`--${option}: contains a lone surrogate (not valid Unicode)`)
      expect(error({ [option]: "x".repeat(1 << 20) })).toBe(`--${option}: too long (1048576 characters, at most 256)`)
      expect(error({ [option]: "  " })).toBe(`--${option}: is empty`)
    }
    expect(ok({ agent: "café 🚀" }).agent).toBe("café 🚀")
  })

  it("bounds the limit", () => {
    expect(ok({}).limit).toBe(50)
    expect(error({ limit: 0 })).toBe("--limit: must be a whole number from 1 to 10000")
    expect(error({ limit: 10_001 })).toBe("--limit: must be a whole number from 1 to 10000")
  })
})

describe("matches", () => {
  const agentId = "0193a3c1-7f2e-7c3a-9b1d-000000000001"
  const serviceId = "0193a3c1-7f2e-7c3a-9b1d-000000000002"
  const event = {
    type: "TunnelOpened",
    workspaceId: "0193a3c1-7f2e-7c3a-9b1d-00000000000f",
    recordedAt: new Date("2026-11-30T11:00:00Z"),
    data: { serviceId, serviceName: "prod-db", fromAgentId: agentId, toAgentId: "x" },
    meta: { actor: { kind: "agent", id: agentId }, sourceIp: "203.0.113.7" }
  }
  const resolved: Resolved = { agentIds: [], serviceIds: [] }
  const m = (raw: RawFilters, r = resolved) => matches(ok(raw), r, event)

  it("applies each filter as the query does", () => {
    expect(m({})).toBe(true)
    expect(m({ since: "2h" })).toBe(true)
    expect(m({ since: "30m" })).toBe(false)
    expect(m({ until: "30m" })).toBe(true)
    expect(m({ until: "2h" })).toBe(false)
    expect(m({ type: "tunnel" })).toBe(true)
    expect(m({ type: "agent" })).toBe(false)
    expect(m({ workspace: event.workspaceId })).toBe(true)
    expect(m({ workspace: serviceId })).toBe(false)
    expect(m({ agent: agentId })).toBe(true)
    expect(m({ agent: serviceId })).toBe(false)
    expect(m({ agent: "box" }, { agentIds: [agentId], serviceIds: [] })).toBe(true)
    expect(m({ agent: "box" })).toBe(false)
    expect(m({ service: "prod-db" })).toBe(true)
    expect(m({ service: serviceId })).toBe(true)
    expect(m({ service: "other" })).toBe(false)
    expect(m({ outcome: "allowed" })).toBe(true)
    expect(m({ outcome: "denied" })).toBe(false)
    expect(m({ ip: "203.0.113.0/24" })).toBe(true)
    expect(m({ ip: "203.0.113.8" })).toBe(false)
    expect(m({ ip: "2001:db8::/32" })).toBe(false)
  })
})
