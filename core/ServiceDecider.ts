/**
 * The service aggregate (stream `service-<id>`): a name in a workspace, exposed by one agent at a time. The id is
 * derived from workspace and name, so two agents racing to expose one name meet on one stream and one of them
 * gets a version conflict instead of a duplicate. A name stays with the agent that exposed it, online or not, until
 * that agent unexposes it or an admin releases it (revoking an agent releases its names); targets are checked by
 * `ExposeTarget`.
 */
import { createHash } from "node:crypto"
import { Either, Schema } from "effect"
import { DomainError } from "./DomainError.ts"
import type { Decider } from "./Decider.ts"
import {
  type Event,
  ServiceExposed,
  ServiceName,
  ServiceReleased,
  type ServiceReleaseReason,
  ServiceUnexposed
} from "./Events.ts"
import * as ExposeTarget from "./ExposeTarget.ts"
import { type AgentId, ServiceId } from "./Ids.ts"

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
    readonly workspaceId: string
    readonly agentId: AgentId
    readonly name: string
    readonly host: string
    readonly port: number
    /** The agent's allow list of targets; absent: anything but cloud metadata addresses. */
    readonly allow?: ReadonlyArray<string>
  }
  | { readonly _tag: "UnexposeService"; readonly serviceId: ServiceId; readonly agentId: AgentId; readonly name: string }
  | {
    readonly _tag: "ReleaseService"
    readonly serviceId: ServiceId
    readonly name: string
    readonly reason: typeof ServiceReleaseReason.Type
    /** Release only if this agent still holds the name (a revocation must not free a name someone else took since). */
    readonly heldBy?: AgentId
  }

const initialState: ServiceState = { status: "none", agentId: undefined, host: undefined, port: undefined }

const evolve = (state: ServiceState, event: Event): ServiceState => {
  switch (event._tag) {
    case "ServiceExposed":
      return { status: "exposed", agentId: event.agentId, host: event.targetHost, port: event.targetPort }
    case "ServiceUnexposed":
    case "ServiceReleased":
      return { ...state, status: "unexposed" }
    default:
      return state
  }
}

const isName = Schema.is(ServiceName)

const invalid = (message: string) => Either.left(new DomainError({ reason: "Invalid", message }))

const expose = (
  command: Extract<ServiceCommand, { _tag: "ExposeService" }>,
  state: ServiceState
): Either.Either<ReadonlyArray<Event>, DomainError> => {
  const name: string = command.name
  if (!isName(name)) return invalid(`invalid service name "${command.name.slice(0, 64)}"`)
  const refused = ExposeTarget.refusal(command.agentId, command.host, command.port, command.allow)
  if (refused !== undefined) return invalid(refused)
  if (state.status === "exposed" && state.agentId !== command.agentId) {
    // Whether the owner is online does not matter: a reach of this name must never reach another agent's target.
    return Either.left(
      new DomainError({
        reason: "Conflict",
        message: `service ${command.name} is exposed by agent ${state.agentId}; it stays with that agent until it ` +
          `unexposes it or an admin releases it: connect hub service release ${command.name} --workspace ${command.workspaceId}`
      })
    )
  }
  if (state.status === "exposed" && state.host === command.host && state.port === command.port) {
    // Re-exposing after a reconnect is the normal case: nothing changed, nothing to record.
    return Either.right([])
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

const release = (
  command: Extract<ServiceCommand, { _tag: "ReleaseService" }>,
  state: ServiceState
): Either.Either<ReadonlyArray<Event>, DomainError> => {
  if (command.heldBy !== undefined && (state.status !== "exposed" || state.agentId !== command.heldBy)) {
    return Either.right([])
  }
  if (state.status !== "exposed") {
    return Either.left(new DomainError({ reason: "NotFound", message: `service ${command.name} is not exposed: nothing to release` }))
  }
  return Either.right([
    new ServiceReleased({
      serviceId: command.serviceId,
      agentId: state.agentId as AgentId,
      name: command.name,
      reason: command.reason
    })
  ])
}

const decide = (command: ServiceCommand, state: ServiceState): Either.Either<ReadonlyArray<Event>, DomainError> => {
  switch (command._tag) {
    case "ExposeService":
      return expose(command, state)
    case "ReleaseService":
      return release(command, state)
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
