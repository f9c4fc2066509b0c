import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import * as E from "../../core/Events.ts"
import { AgentId, uuidv7, WorkspaceId } from "../../core/Ids.ts"
import { decider, type ServiceCommand, serviceIdFor } from "../../core/ServiceDecider.ts"
import { spec } from "../support/DeciderSpec.ts"

const ws = WorkspaceId.make(uuidv7())
const a = AgentId.make(uuidv7())
const b = AgentId.make(uuidv7())
const serviceId = serviceIdFor(ws, "prod-db")
const exposedAs = (agentId: AgentId, targetHost: string, targetPort: number) =>
  new E.ServiceExposed({ serviceId, agentId, name: "prod-db", targetHost, targetPort })
const exposed = exposedAs(a, "127.0.0.1", 5432)
const { given } = spec(decider)
const expose = (agentId: AgentId, port: number, host = "127.0.0.1", allow?: ReadonlyArray<string>) =>
  ({
    _tag: "ExposeService",
    serviceId,
    workspaceId: ws,
    agentId,
    name: "prod-db",
    host,
    port,
    ...(allow ? { allow } : {})
  }) as const
const release = (reason: "admin" | "agent_revoked", heldBy?: AgentId): ServiceCommand => ({
  _tag: "ReleaseService",
  serviceId,
  name: "prod-db",
  reason,
  ...(heldBy ? { heldBy } : {})
})
const released = (agentId: AgentId, reason: "admin" | "agent_revoked") =>
  new E.ServiceReleased({ serviceId, agentId, name: "prod-db", reason })
const messageOf = (command: ServiceCommand, events: ReadonlyArray<E.Event> = []) => {
  const result = decider.decide(command, events.reduce(decider.evolve, decider.initialState))
  return Either.isLeft(result) ? result.left.message : "accepted"
}

describe("ServiceDecider", () => {
  it("derives one id per workspace and name", () => {
    expect(serviceIdFor(ws, "prod-db")).toBe(serviceId)
    expect(serviceIdFor(WorkspaceId.make(uuidv7()), "prod-db")).not.toBe(serviceId)
    expect(serviceId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
  })

  it("exposes a name; the same agent re-exposing it unchanged records nothing", () => {
    given([]).when(expose(a, 5432)).then([exposed])
    given([exposed]).when(expose(a, 5432)).then([])
    given([exposed]).when(expose(a, 5433)).then([exposedAs(a, "127.0.0.1", 5433)])
  })

  it("keeps a name with its agent, online or not, and says how to get it released", () => {
    given([exposed]).when(expose(b, 5432)).thenFails("Conflict")
    const message = messageOf(expose(b, 5432), [exposed])
    expect(message).toContain(a)
    expect(message).toContain(`connect hub service release prod-db --workspace ${ws}`)
  })

  it("frees a name once its agent unexposes it or an admin releases it", () => {
    const unexposed = new E.ServiceUnexposed({ serviceId, agentId: a, name: "prod-db" })
    given([exposed, unexposed]).when(expose(b, 5432)).then([exposedAs(b, "127.0.0.1", 5432)])
    given([exposed]).when(release("admin")).then([released(a, "admin")])
    given([exposed, released(a, "admin")]).when(expose(b, 5432)).then([exposedAs(b, "127.0.0.1", 5432)])
    // The owner coming back after a release gets its name again if nobody took it.
    given([exposed, released(a, "admin")]).when(expose(a, 5432)).then([exposed])
    given([]).when(release("admin")).thenFails("NotFound")
    given([exposed, unexposed]).when(release("admin")).thenFails("NotFound")
  })

  it("releases a revoked agent's name only while that agent still holds it", () => {
    given([exposed]).when(release("agent_revoked", a)).then([released(a, "agent_revoked")])
    given([exposed]).when(release("agent_revoked", b)).then([])
    given([]).when(release("agent_revoked", a)).then([])
  })

  it("unexposes only the owner's exposed service", () => {
    const unexpose = (agentId: AgentId) => ({ _tag: "UnexposeService", serviceId, agentId, name: "prod-db" }) as const
    given([exposed]).when(unexpose(a)).then([new E.ServiceUnexposed({ serviceId, agentId: a, name: "prod-db" })])
    given([exposed]).when(unexpose(b)).thenFails("NotFound")
    given([exposed, new E.ServiceUnexposed({ serviceId, agentId: a, name: "prod-db" })]).when(unexpose(a)).thenFails("NotFound")
  })

  it("refuses an invalid name", () => {
    given([]).when({ ...expose(a, 1), name: "no spaces" }).thenFails("Invalid")
  })

  it("accepts host names, IPv4 and IPv6 addresses as targets", () => {
    for (const host of ["localhost", "db.internal", "db-1.prod.example.com", "my_db", "10.0.0.5", "::1", "fd12::5", "a".repeat(63)]) {
      given([]).when(expose(a, 5432, host)).then([exposedAs(a, host, 5432)])
    }
  })

  it("refuses a host that is neither a host name nor an address, or longer than a DNS name", () => {
    const long = Array.from({ length: 64 }, () => "abcd").join(".") // 319 characters, every label valid
    for (const host of ["", " ", long, "x".repeat(900_000), "a b", "db:5432", "-db", "db-", "a..b", "a".repeat(64), "[::1]", "fe80::1%eth0", "db\u0000"]) {
      given([]).when(expose(a, 5432, host)).thenFails("Invalid")
    }
    expect(messageOf(expose(a, 5432, long))).toContain("253")
    expect(messageOf(expose(a, 5432, "x".repeat(900_000))).length).toBeLessThan(300)
  })

  it("refuses numeric host names the resolver would read as an address (2852039166 is 169.254.169.254)", () => {
    for (const host of ["2852039166", "0xa9fea9fe", "169.254.43518", "0251.0376.0251.0376", "169.254.169.254."]) {
      given([]).when(expose(a, 80, host)).thenFails("Invalid")
    }
  })

  it("refuses a port outside 1-65535", () => {
    for (const port of [0, -1, 65536, 70000, 1.5, Number.NaN]) given([]).when(expose(a, port)).thenFails("Invalid")
    expect(messageOf(expose(a, 70000))).toContain("1-65535")
    given([]).when(expose(a, 65535)).then([exposedAs(a, "127.0.0.1", 65535)])
  })

  it("refuses cloud metadata and link-local addresses unless the allow list names them", () => {
    const metadata = [
      "169.254.169.254",
      "169.254.170.2",
      "::ffff:169.254.169.254",
      "::ffff:a9fe:a9fe",
      "fd00:ec2::254",
      "FD00:EC2:0:0:0:0:0:254",
      "fe80::1",
      "100.100.100.200",
      "metadata.google.internal",
      "METADATA.google.internal."
    ]
    for (const host of metadata) given([]).when(expose(a, 80, host)).thenFails("Invalid")
    expect(messageOf(expose(a, 80, "169.254.169.254"))).toContain("connect hub agent allow")
    // Named explicitly: by the address, a range inside the metadata range, or the name.
    given([]).when(expose(a, 80, "169.254.169.254", ["169.254.169.254"])).then([exposedAs(a, "169.254.169.254", 80)])
    given([]).when(expose(a, 80, "169.254.170.2", ["169.254.0.0/16"])).then([exposedAs(a, "169.254.170.2", 80)])
    given([]).when(expose(a, 80, "metadata.google.internal", ["metadata.google.internal"])).then([
      exposedAs(a, "metadata.google.internal", 80)
    ])
    // A wider range that happens to contain them does not name them.
    given([]).when(expose(a, 80, "169.254.169.254", ["0.0.0.0/0"])).thenFails("Invalid")
    given([]).when(expose(a, 80, "fd00:ec2::254", ["::/0"])).thenFails("Invalid")
  })

  it("limits an agent with an allow list to the addresses, ranges and names on it", () => {
    const allow = ["10.0.0.0/8", "db.internal", "*.svc.cluster.local", "fd12::/16"]
    for (const host of ["10.1.2.3", "DB.internal", "api.svc.cluster.local", "fd12:1::5", "::ffff:10.0.0.1"]) {
      given([]).when(expose(a, 80, host, allow)).then([exposedAs(a, host, 80)])
    }
    for (const host of ["11.0.0.1", "127.0.0.1", "localhost", "other.internal", "svc.cluster.local", "fd13::1"]) {
      given([]).when(expose(a, 80, host, allow)).thenFails("Invalid")
    }
    expect(messageOf(expose(a, 80, "127.0.0.1", allow))).toContain("allow list")
    // Without a list (the default) anything but metadata is allowed, as before.
    given([]).when(expose(a, 80, "11.0.0.1")).then([exposedAs(a, "11.0.0.1", 80)])
  })
})
