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
})
