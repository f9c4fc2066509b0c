import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import * as AgentDecider from "../../core/AgentDecider.ts"
import { fold } from "../../core/Decider.ts"
import * as E from "../../core/Events.ts"
import { AgentId, uuidv7 } from "../../core/Ids.ts"
import { sha256Hex } from "../../core/Secrets.ts"
import { spec } from "../support/DeciderSpec.ts"

const agentId = AgentId.make(uuidv7())
const h1 = E.Sha256Hex.make(sha256Hex("token-1"))
const h2 = E.Sha256Hex.make(sha256Hex("token-2"))
const t0 = new Date("2026-01-01T00:00:00.000Z")
const day = 24 * 60 * 60 * 1000
const at = (days: number) => new Date(t0.getTime() + days * day)
const provisioned = new E.AgentProvisioned({ agentId, label: "laptop", tokenHash: h1, expiresAt: at(30) })
const { given } = spec(AgentDecider.decider)

describe("AgentDecider", () => {
  it("provisions a new agent once", () => {
    given([]).when({ _tag: "ProvisionAgent", agentId, label: " laptop ", tokenHash: h1, expiresAt: at(30) }).then([provisioned])
    given([provisioned]).when({ _tag: "ProvisionAgent", agentId, label: "x", tokenHash: h2, expiresAt: at(30) })
      .thenFails("AlreadyExists")
  })

  it("rotates the token with a 24 h grace for the old one", () => {
    given([provisioned]).when({ _tag: "RotateAgentToken", agentId, newTokenHash: h2, newExpiresAt: at(35), now: at(5) }).then([
      new E.AgentTokenRotated({ agentId, newTokenHash: h2, newExpiresAt: at(35), oldValidUntil: at(6) })
    ])
    // A 7-day agent on a hub whose operator has since set 1 day: the hub's lifetime is the ceiling.
    const week = new E.AgentProvisioned({ agentId, label: "ci", tokenHash: h1, expiresAt: at(7), ttlSeconds: 7 * 86_400 })
    given([week]).when({ _tag: "RotateAgentToken", agentId, newTokenHash: h2, newExpiresAt: at(3), now: at(2) }).then([
      new E.AgentTokenRotated({ agentId, newTokenHash: h2, newExpiresAt: at(3), oldValidUntil: new Date(at(2).getTime() + 6 * 3_600_000) })
    ])
  })

  it("refuses rotation and connection after revocation; revoking twice records nothing", () => {
    const revoked = new E.AgentTokenRevoked({ agentId })
    given([provisioned, revoked]).when({ _tag: "RotateAgentToken", agentId, newTokenHash: h2, newExpiresAt: at(35), now: at(1) })
      .thenFails("Revoked")
    given([provisioned, revoked]).when({ _tag: "ConnectAgent", agentId, ip: "1.2.3.4", userAgent: "a", transport: "ws" })
      .thenFails("Revoked")
    given([provisioned, revoked]).when({ _tag: "RevokeAgentToken", agentId }).then([])
    given([]).when({ _tag: "RevokeAgentToken", agentId }).thenFails("NotFound")
  })

  it("records an IP change when an agent reconnects from elsewhere", () => {
    const first = new E.AgentConnected({ agentId, ip: "10.0.0.1", userAgent: "a", transport: "ws" })
    given([provisioned]).when({ _tag: "ConnectAgent", agentId, ip: "10.0.0.1", userAgent: "a", transport: "ws" }).then([first])
    given([provisioned, first]).when({ _tag: "ConnectAgent", agentId, ip: "10.0.0.1", userAgent: "a", transport: "ws" }).then([first])
    given([provisioned, first]).when({ _tag: "ConnectAgent", agentId, ip: "10.0.0.2", userAgent: "a", transport: "msgpack" }).then([
      new E.AgentConnected({ agentId, ip: "10.0.0.2", userAgent: "a", transport: "msgpack" }),
      new E.AgentIpChanged({ agentId, previousIp: "10.0.0.1", newIp: "10.0.0.2" })
    ])
  })

  it("checks tokens: current until expiry, previous within its grace, never after revocation", () => {
    const rotated = new E.AgentTokenRotated({ agentId, newTokenHash: h2, newExpiresAt: at(35), oldValidUntil: at(6) })
    const state = fold(AgentDecider.decider, [provisioned, rotated])
    expect(AgentDecider.checkToken(state, h2, at(5))).toEqual(Either.right({ expiresAt: at(35), previous: false }))
    expect(AgentDecider.checkToken(state, h1, at(5.5))).toEqual(Either.right({ expiresAt: at(6), previous: true }))
    expect(AgentDecider.checkToken(state, h1, at(6))).toEqual(Either.left("expired_token"))
    expect(AgentDecider.checkToken(state, h2, at(35))).toEqual(Either.left("expired_token"))
    expect(AgentDecider.checkToken(state, sha256Hex("other"), at(1))).toEqual(Either.left("unknown_token"))
    const revoked = fold(AgentDecider.decider, [new E.AgentTokenRevoked({ agentId })], state)
    expect(AgentDecider.checkToken(revoked, h2, at(5))).toEqual(Either.left("revoked_token"))
    expect(AgentDecider.expiresSoon(at(35), at(27))).toBe(false)
    expect(AgentDecider.expiresSoon(at(35), at(28))).toBe(true)
  })

  it("records a provisioned lifetime (--ttl), and rotations keep it within the hub's lifetime", () => {
    const minute = 60_000
    const short = new E.AgentProvisioned({ agentId, label: "ci", tokenHash: h1, expiresAt: new Date(t0.getTime() + 15 * minute), ttlSeconds: 900 })
    given([]).when({ _tag: "ProvisionAgent", agentId, label: "ci", tokenHash: h1, expiresAt: new Date(t0.getTime() + 15 * minute), ttlMs: 15 * minute })
      .then([short])
    // Rotated 10 minutes in: 15 minutes again (not the 30 days the hub would give by default), the old token kept
    // for a quarter of that (225 s), within its own expiry.
    const now = new Date(t0.getTime() + 10 * minute)
    given([short]).when({ _tag: "RotateAgentToken", agentId, newTokenHash: h2, newExpiresAt: at(30), now }).then([
      new E.AgentTokenRotated({
        agentId,
        newTokenHash: h2,
        newExpiresAt: new Date(now.getTime() + 15 * minute),
        oldValidUntil: new Date(now.getTime() + 225_000)
      })
    ])
    // Rotated 14 minutes in: the grace would reach past the old token's expiry, so it ends there.
    const late = new Date(t0.getTime() + 14 * minute)
    given([short]).when({ _tag: "RotateAgentToken", agentId, newTokenHash: h2, newExpiresAt: at(30), now: late }).then([
      new E.AgentTokenRotated({
        agentId,
        newTokenHash: h2,
        newExpiresAt: new Date(late.getTime() + 15 * minute),
        oldValidUntil: new Date(t0.getTime() + 15 * minute)
      })
    ])
    // Without --ttl the hub's default stands: 30 days, a 24 h grace (a quarter would be 7.5 days).
    given([provisioned]).when({ _tag: "RotateAgentToken", agentId, newTokenHash: h2, newExpiresAt: at(35), now: at(5) }).then([
      new E.AgentTokenRotated({ agentId, newTokenHash: h2, newExpiresAt: at(35), oldValidUntil: at(6) })
    ])
  })

  it("never lets the grace or the warning exceed a quarter of the lifetime", () => {
    const minute = 60_000
    expect(AgentDecider.graceFor(5 * minute)).toBe(75_000)
    expect(AgentDecider.warningFor(5 * minute)).toBe(75_000)
    expect(AgentDecider.graceFor(30 * day)).toBe(AgentDecider.ROTATION_GRACE_MS)
    expect(AgentDecider.warningFor(30 * day)).toBe(AgentDecider.EXPIRY_WARNING_MS)
    expect(AgentDecider.graceFor(2 * day)).toBe(12 * 60 * minute)
    // A 15-minute token is quiet when issued and warned in its last quarter only.
    const expires = new Date(t0.getTime() + 15 * minute)
    expect(AgentDecider.expiresSoon(expires, t0, 15 * minute)).toBe(false)
    expect(AgentDecider.expiresSoon(expires, new Date(t0.getTime() + 11 * minute), 15 * minute)).toBe(false)
    expect(AgentDecider.expiresSoon(expires, new Date(t0.getTime() + 11.25 * minute), 15 * minute)).toBe(true)
    // Without a lifetime the 7 days stand.
    expect(AgentDecider.expiresSoon(expires, t0)).toBe(true)
  })

  it("reads --ttl from 5m to 30d and names the range otherwise", () => {
    const minute = 60_000
    expect(AgentDecider.parseTtl("15m")).toEqual(Either.right(15 * minute))
    expect(AgentDecider.parseTtl("5m")).toEqual(Either.right(5 * minute))
    expect(AgentDecider.parseTtl("7d")).toEqual(Either.right(7 * day))
    expect(AgentDecider.parseTtl("720h")).toEqual(Either.right(30 * day))
    expect(AgentDecider.parseTtl(" 30d ")).toEqual(Either.right(30 * day))
    const range = "give one from 5m to 30d (minutes m, hours h, days d, e.g. 15m, 12h, 7d)"
    expect(AgentDecider.parseTtl("4m")).toEqual(Either.left(`--ttl 4m is out of range: ${range}`))
    expect(AgentDecider.parseTtl("31d")).toEqual(Either.left(`--ttl 31d is out of range: ${range}`))
    expect(AgentDecider.parseTtl("721h")).toEqual(Either.left(`--ttl 721h is out of range: ${range}`))
    expect(AgentDecider.parseTtl("0m")).toEqual(Either.left(`--ttl 0m is out of range: ${range}`))
    for (const bad of ["", "15", "15s", "1w", "-5m", "1.5d", "15 m", "15m\u0000", "\ud800", "9".repeat(1_000_000) + "d"]) {
      const result = AgentDecider.parseTtl(bad)
      expect(Either.isLeft(result)).toBe(true)
      if (Either.isLeft(result)) {
        expect(result.left).toContain(range)
        expect(result.left.length).toBeLessThan(200)
      }
    }
  })
})
