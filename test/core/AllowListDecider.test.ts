import { describe, it } from "@effect/vitest"
import * as AllowListDecider from "../../core/AllowListDecider.ts"
import * as E from "../../core/Events.ts"
import { AgentId, uuidv7 } from "../../core/Ids.ts"
import { spec } from "../support/DeciderSpec.ts"

const a = AgentId.make(uuidv7())
const provisioned = new E.AgentProvisioned({ agentId: a, label: "a", tokenHash: E.Sha256Hex.make("0".repeat(64)), expiresAt: new Date(0) })
const set = (allow?: ReadonlyArray<string>) => ({ _tag: "SetAllowList", agentId: a, ...(allow ? { allow } : {}) }) as const
const { given } = spec(AllowListDecider.decider)

describe("AllowListDecider", () => {
  it("sets, keeps and clears an agent's allow list", () => {
    const listed = new E.AgentAllowListSet({ agentId: a, allow: ["10.0.0.0/8", "db.internal"] })
    given([provisioned]).when(set([" 10.0.0.0/8", "db.internal", "db.internal"])).then([listed])
    given([provisioned, listed]).when(set(["10.0.0.0/8", "db.internal"])).then([])
    given([provisioned, listed]).when(set(["10.0.0.0/8"])).then([new E.AgentAllowListSet({ agentId: a, allow: ["10.0.0.0/8"] })])
    given([provisioned, listed]).when(set()).then([new E.AgentAllowListSet({ agentId: a })])
    given([provisioned]).when(set()).then([])
  })

  it(`holds 1 to ${AllowListDecider.MAX_ENTRIES} entries, counted after duplicates go`, () => {
    const hosts = (n: number) => Array.from({ length: n }, (_, i) => `host-${i}.internal`)
    given([provisioned]).when(set(hosts(AllowListDecider.MAX_ENTRIES))).then([
      new E.AgentAllowListSet({ agentId: a, allow: hosts(AllowListDecider.MAX_ENTRIES) })
    ])
    given([provisioned]).when(set([...hosts(AllowListDecider.MAX_ENTRIES), "host-0.internal"])).then([
      new E.AgentAllowListSet({ agentId: a, allow: hosts(AllowListDecider.MAX_ENTRIES) })
    ])
    given([provisioned]).when(set(hosts(AllowListDecider.MAX_ENTRIES + 1))).thenFails("Invalid")
    given([provisioned]).when(set([])).thenFails("Invalid")
  })

  it("refuses a malformed entry, an unknown or a revoked agent", () => {
    for (const entry of ["10.0.0.0/33", "10.0.0.0/", "not a host", "1.2.3.4/8/8", "*.", "x".repeat(300)]) {
      given([provisioned]).when(set([entry])).thenFails("Invalid")
    }
    given([provisioned]).when(set([" "])).thenFails("Invalid")
    given([]).when(set(["10.0.0.0/8"])).thenFails("NotFound")
    given([provisioned, new E.AgentTokenRevoked({ agentId: a })]).when(set(["10.0.0.0/8"])).thenFails("Revoked")
  })
})
