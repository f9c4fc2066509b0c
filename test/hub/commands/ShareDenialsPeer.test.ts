/**
 * Which share refusals the joining workspace reads (`byWorkspaceId`, the column its row-level security follows): its
 * own expired, revoked or rate-limited uses, yes; a `not_shared` refusal, no — it names a service the owner has and
 * did not share, and a joiner that could read it learned which names exist by trying them (found by an attacker's
 * review: `not_shared serviceName:"secretdb"` in the joiner's audit log, nothing for a name the owner lacks).
 */
import { describe, expect, it } from "vitest"
import * as ShareDenials from "../../../hub/commands/ShareDenials.ts"

const refusal = (reason: "not_shared" | "revoked" | "expired" | "rate_limited") => ({
  action: "open" as const,
  reason,
  agentId: "0193a3c1-7f2e-7c3a-9b1d-000000000001",
  workspaceId: "0193a3c1-7f2e-7c3a-9b1d-00000000000b",
  ip: "203.0.113.5",
  share: { id: "0193a3c1-7f2e-7c3a-9b1d-0000000000aa", ownerId: "0193a3c1-7f2e-7c3a-9b1d-00000000000a" },
  serviceName: "secretdb"
})

describe("ShareDenials.eventOf", () => {
  it("a not_shared refusal is the owner's alone: no byWorkspaceId", () => {
    expect(ShareDenials.eventOf(refusal("not_shared")).byWorkspaceId).toBeUndefined()
  })

  it.each(["revoked", "expired", "rate_limited"] as const)("a %s refusal is the joiner's too", (reason) => {
    expect(ShareDenials.eventOf(refusal(reason)).byWorkspaceId).toBe("0193a3c1-7f2e-7c3a-9b1d-00000000000b")
  })
})
