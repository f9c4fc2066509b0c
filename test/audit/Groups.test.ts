/**
 * Every event type of the catalog has exactly one group, and the outcome rule marks refusals and failures denied.
 */
import { describe, expect, it } from "@effect/vitest"
import { eventTypes } from "../../core/Events.ts"
import { GROUPS, groupOf, outcomeOf, typesOf } from "../../audit/Groups.ts"

describe("Groups", () => {
  it("gives every catalog type a group, and a new type without one fails here", () => {
    const missing = eventTypes.filter((t) => groupOf(t) === undefined)
    expect(missing).toEqual([])
    expect(GROUPS.flatMap((g) => typesOf(g)).sort()).toEqual([...eventTypes].sort())
  })

  it("has no empty group and no group for an unknown type", () => {
    for (const g of GROUPS) expect(typesOf(g).length).toBeGreaterThan(0)
    expect(groupOf("SomethingNew")).toBeUndefined()
    expect(groupOf("constructor")).toBeUndefined()
  })

  it("puts refused credentials under auth and reach refusals under tunnel", () => {
    expect(typesOf("auth")).toEqual(["AgentAuthFailed", "ApiKeyAuthFailed", "ConsoleSignInFailed"])
    expect(groupOf("ConsoleSignedIn")).toBe("audit")
    expect(groupOf("ReachDenied")).toBe("tunnel")
  })
})

describe("outcomeOf", () => {
  it("denies refusals and failures, allows the rest", () => {
    expect(outcomeOf("AgentAuthFailed", { reason: "unknown_token", ip: "203.0.113.9" })).toBe("denied")
    expect(outcomeOf("ApiKeyAuthFailed", {})).toBe("denied")
    expect(outcomeOf("ReachDenied", { reason: "not_found" })).toBe("denied")
    expect(outcomeOf("LinkAccessed", { outcome: "denied", reason: "expired" })).toBe("denied")
    expect(outcomeOf("LinkAccessed", { outcome: "allowed" })).toBe("allowed")
    expect(outcomeOf("ShareAccessed", { outcome: "denied" })).toBe("denied")
    expect(outcomeOf("ShareAccessed", { outcome: "allowed" })).toBe("allowed")
    expect(outcomeOf("TunnelClosed", { reason: "connect_failed" })).toBe("denied")
    expect(outcomeOf("TunnelClosed", { reason: "end" })).toBe("allowed")
    expect(outcomeOf("AgentConnected", {})).toBe("allowed")
    expect(outcomeOf("FromANewerBuild", null)).toBe("allowed")
  })
})
