import { describe, expect, it } from "vitest"
import * as E from "../../core/Events.ts"
import { AgentId, ServiceId, ShareId, uuidv7, WorkspaceId } from "../../core/Ids.ts"
import * as ShareDecider from "../../core/ShareDecider.ts"
import { spec } from "../support/DeciderSpec.ts"

const shareId = ShareId.make(uuidv7())
const serviceId = ServiceId.make(uuidv7())
const now = new Date("2026-11-30T12:00:00.000Z")
const later = new Date("2026-12-07T12:00:00.000Z")
const created = new E.ShareCreated({
  shareId,
  codeHash: "a".repeat(64) as E.Sha256Hex,
  codePrefix: "sh_abcdef",
  services: [{ serviceId, name: "prod-db" }],
  expiresAt: later,
  permissions: ["reach"],
  rateLimit: { limit: 60, windowSeconds: 60 }
})
const create = {
  _tag: "CreateShare" as const,
  shareId,
  codeHash: "a".repeat(64),
  codePrefix: "sh_abcdef",
  services: [{ serviceId, name: "prod-db" }],
  expiresAt: later,
  now,
  rateLimit: { limit: 60, windowSeconds: 60 }
}

describe("ShareDecider", () => {
  const share = spec(ShareDecider.decider)
  it("creates once, with its code's hash and the services", () => {
    share.given([]).when(create).then([created])
    share.given([created]).when(create).thenFails("AlreadyExists")
  })
  it("refuses a share that expires now or before", () => {
    share.given([]).when({ ...create, expiresAt: now }).thenFails("Invalid")
  })
  it("revokes once; revoking twice records nothing; an unknown share is not found", () => {
    share.given([created]).when({ _tag: "RevokeShare", shareId }).then([new E.ShareRevoked({ shareId })])
    share.given([created, new E.ShareRevoked({ shareId })]).when({ _tag: "RevokeShare", shareId }).then([])
    share.given([]).when({ _tag: "RevokeShare", shareId }).thenFails("NotFound")
  })
  it("an agent joins once per peer stream", () => {
    const join = spec(ShareDecider.joinDecider)
    const agentId = AgentId.make(uuidv7())
    const peerWorkspaceId = WorkspaceId.make(uuidv7())
    const joined = new E.ShareJoined({ shareId, agentId, peerWorkspaceId })
    join.given([]).when({ _tag: "JoinShare", shareId, agentId, peerWorkspaceId }).then([joined])
    join.given([joined]).when({ _tag: "JoinShare", shareId, agentId, peerWorkspaceId }).then([])
  })
  it("parses durations and rates, refusing anything else", () => {
    expect(ShareDecider.parseDuration("7d")).toBe(7 * 86_400_000)
    expect(ShareDecider.parseDuration("45s")).toBe(45_000)
    for (const bad of ["", "0d", "7", "7w", "-1d", "1e3s", "99999999d", "7d\u0000", "x".repeat(1_000_000)]) {
      expect(ShareDecider.parseDuration(bad)).toBeUndefined()
    }
    expect(ShareDecider.parseRateLimit("60/min")).toEqual({ limit: 60, windowSeconds: 60 })
    expect(ShareDecider.parseRateLimit("5/s")).toEqual({ limit: 5, windowSeconds: 1 })
    for (const bad of ["", "0/min", "60", "60/week", "/min", "60/min\ud800"]) {
      expect(ShareDecider.parseRateLimit(bad)).toBeUndefined()
    }
  })
})
