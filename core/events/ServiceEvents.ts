/** The events of a service name: exposed by an agent, withdrawn, or released from it. */
import { Schema } from "effect"
import { AgentId, ServiceId } from "../Ids.ts"
import { Port, ServiceName } from "./Fields.ts"

/** Why a service name was freed without its agent unexposing it: an admin released it, or its agent was revoked. */
export const ServiceReleaseReason = Schema.Literal("admin", "agent_revoked")

/** An agent exposed a local TCP target under a service name in its workspace. */
export class ServiceExposed extends Schema.TaggedClass<ServiceExposed>()("ServiceExposed", {
  serviceId: ServiceId,
  agentId: AgentId,
  name: ServiceName,
  targetHost: Schema.NonEmptyTrimmedString,
  targetPort: Port
}) {}

/** An agent withdrew a service; it can no longer be reached. */
export class ServiceUnexposed extends Schema.TaggedClass<ServiceUnexposed>()("ServiceUnexposed", {
  serviceId: ServiceId,
  agentId: AgentId,
  name: ServiceName
}) {}

/**
 * A service name was freed while `agentId` held it, by an admin (`connect hub service release`) or because that
 * agent was revoked; it can no longer be reached and any agent of the workspace may expose the name again.
 */
export class ServiceReleased extends Schema.TaggedClass<ServiceReleased>()("ServiceReleased", {
  serviceId: ServiceId,
  agentId: AgentId,
  name: ServiceName,
  reason: ServiceReleaseReason
}) {}
