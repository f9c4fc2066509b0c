import { describe, expect, it } from "@effect/vitest"
import * as E from "../../core/Events.ts"
import { AgentId, uuidv7, WorkspaceId } from "../../core/Ids.ts"
import { decider, serviceIdFor } from "../../core/ServiceDecider.ts"
import { spec } from "../support/DeciderSpec.ts"

const ws = WorkspaceId.make(uuidv7())
const a = AgentId.make(uuidv7())
const b = AgentId.make(uuidv7())
const serviceId = serviceIdFor(ws, "prod-db")
const exposed = new E.ServiceExposed({ serviceId, agentId: a, name: "prod-db", targetHost: "127.0.0.1", targetPort: 5432 })
const { given } = spec(decider)
const expose = (agentId: AgentId, port: number, ownerOnline: boolean) =>
  ({ _tag: "ExposeService", serviceId, agentId, name: "prod-db", host: "127.0.0.1", port, ownerOnline }) as const

describe("ServiceDecider", () => {
  it("derives one id per workspace and name", () => {
    expect(serviceIdFor(ws, "prod-db")).toBe(serviceId)
    expect(serviceIdFor(WorkspaceId.make(uuidv7()), "prod-db")).not.toBe(serviceId)
    expect(serviceId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
  })

  it("exposes a name; the same agent re-exposing it unchanged records nothing", () => {
    given([]).when(expose(a, 5432, false)).then([exposed])
    given([exposed]).when(expose(a, 5432, true)).then([])
    given([exposed]).when(expose(a, 5433, true)).then([
      new E.ServiceExposed({ serviceId, agentId: a, name: "prod-db", targetHost: "127.0.0.1", targetPort: 5433 })
    ])
  })

  it("refuses another agent's live name, and lets it take the name over when the owner is offline", () => {
    given([exposed]).when(expose(b, 5432, true)).thenFails("Conflict")
    given([exposed]).when(expose(b, 5432, false)).then([
      new E.ServiceExposed({ serviceId, agentId: b, name: "prod-db", targetHost: "127.0.0.1", targetPort: 5432 })
    ])
  })

  it("unexposes only the owner's exposed service", () => {
    const unexpose = (agentId: AgentId) => ({ _tag: "UnexposeService", serviceId, agentId, name: "prod-db" }) as const
    given([exposed]).when(unexpose(a)).then([new E.ServiceUnexposed({ serviceId, agentId: a, name: "prod-db" })])
    given([exposed]).when(unexpose(b)).thenFails("NotFound")
    given([exposed, new E.ServiceUnexposed({ serviceId, agentId: a, name: "prod-db" })]).when(unexpose(a)).thenFails("NotFound")
  })

  it("refuses an invalid name", () => {
    given([]).when({ ...expose(a, 1, false), name: "no spaces" }).thenFails("Invalid")
  })
})
