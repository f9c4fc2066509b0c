/**
 * The service aggregate (stream `service-<id>`): a name in a workspace, exposed by one agent at a time. The id is
 * derived from workspace and name, so two agents racing to expose one name meet on one stream and one of them
 * gets a version conflict instead of a duplicate.
 */
import { createHash } from "node:crypto"
import { Either } from "effect"
import { DomainError } from "./DomainError.ts"
import type { Decider } from "./Decider.ts"
import { type Event, ServiceExposed, ServiceName, ServiceUnexposed } from "./Events.ts"
import { type AgentId, ServiceId } from "./Ids.ts"
import { Schema } from "effect"

/** The id of service `name` in a workspace: a UUIDv8 over SHA-256(workspace id, name). */
export const serviceIdFor = (workspaceId: string, name: string): ServiceId => {
  const h = createHash("sha256").update(`${workspaceId}\0${name}`, "utf8").digest("hex")
  const variant = ((parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16)
  return ServiceId.make(`${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`)
}

/** What the log says about one service. */
export interface ServiceState {
  readonly status: "none" | "exposed" | "unexposed"
  readonly agentId: string | undefined
  readonly host: string | undefined
  readonly port: number | undefined
}

/** Commands on a service. */
export type ServiceCommand =
  | {
    readonly _tag: "ExposeService"
    readonly serviceId: ServiceId
    readonly agentId: AgentId
    readonly name: string
    readonly host: string
    readonly port: number
    /** Whether the agent currently exposing the name (if another one) is connected. */
    readonly ownerOnline: boolean
  }
  | { readonly _tag: "UnexposeService"; readonly serviceId: ServiceId; readonly agentId: AgentId; readonly name: string }

const initialState: ServiceState = { status: "none", agentId: undefined, host: undefined, port: undefined }

const evolve = (state: ServiceState, event: Event): ServiceState => {
  switch (event._tag) {
    case "ServiceExposed":
      return { status: "exposed", agentId: event.agentId, host: event.targetHost, port: event.targetPort }
    case "ServiceUnexposed":
      return { ...state, status: "unexposed" }
    default:
      return state
  }
}

const isName = Schema.is(ServiceName)

const decide = (command: ServiceCommand, state: ServiceState): Either.Either<ReadonlyArray<Event>, DomainError> => {
  switch (command._tag) {
    case "ExposeService": {
      if (!isName(command.name)) {
        return Either.left(new DomainError({ reason: "Invalid", message: `invalid service name "${command.name}"` }))
      }
      if (command.host.trim() === "") return Either.left(new DomainError({ reason: "Invalid", message: "empty target host" }))
      if (state.status === "exposed") {
        if (state.agentId === command.agentId && state.host === command.host && state.port === command.port) {
          // Re-exposing after a reconnect is the normal case: nothing changed, nothing to record.
          return Either.right([])
        }
        if (state.agentId !== command.agentId && command.ownerOnline) {
          return Either.left(
            new DomainError({ reason: "Conflict", message: `service ${command.name} is exposed by another agent` })
          )
        }
      }
      return Either.right([
        new ServiceExposed({
          serviceId: command.serviceId,
          agentId: command.agentId,
          name: command.name,
          targetHost: command.host,
          targetPort: command.port
        })
      ])
    }
    case "UnexposeService":
      if (state.status !== "exposed" || state.agentId !== command.agentId) {
        return Either.left(new DomainError({ reason: "NotFound", message: `Service not found: ${command.name}` }))
      }
      return Either.right([
        new ServiceUnexposed({ serviceId: command.serviceId, agentId: command.agentId, name: command.name })
      ])
  }
}

/** The service decider. */
export const decider: Decider<ServiceCommand, ServiceState, DomainError> = { initialState, evolve, decide }
