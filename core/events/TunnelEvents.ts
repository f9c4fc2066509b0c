/** The events of a tunnel: opened, closed with its byte counts, or refused before it opened. */
import { Schema } from "effect"
import { AgentId, LinkId, ServiceId, ShareId, TunnelId, WorkspaceId } from "../Ids.ts"
import { Count, optional, ServiceName, Timestamp } from "./Fields.ts"

/**
 * Why a tunnel ended: `end` after both sides shut down cleanly, `reset` when either side aborted, `hub_crashed` when
 * its hub died with it open and closed it in the log at its next start (its byte counts are then unknown, recorded 0),
 * `share_revoked` when the share it was opened through was revoked, `share_expired` when that share expired.
 */
export const TunnelCloseReason = Schema.Literal(
  "end",
  "reset",
  "agent_disconnected",
  "service_unexposed",
  "connect_failed",
  "idle_timeout",
  "hub_shutdown",
  "hub_crashed",
  "error",
  "share_revoked",
  "share_expired"
)

/** Why a reach request was refused. */
export const ReachDeniedReason = Schema.Literal(
  "not_found",
  "cross_workspace",
  "share_not_found",
  "share_expired",
  "share_revoked",
  "share_service_not_included",
  "agent_offline",
  "rate_limited",
  "too_many_streams"
)

/** A tunnel to a service was opened, from an agent of the same workspace or through a share, before any byte flows. */
export class TunnelOpened extends Schema.TaggedClass<TunnelOpened>()("TunnelOpened", {
  tunnelId: TunnelId,
  serviceId: ServiceId,
  serviceName: ServiceName,
  fromAgentId: optional(AgentId),
  viaShareId: optional(ShareId),
  toAgentId: AgentId,
  /** The public link whose pooled HTTP connection this tunnel is (the hub itself is the reaching side). */
  viaLinkId: optional(LinkId),
  /** Through a share: the reacher's workspace, so that its API keys read the tunnel too (migration 0015). */
  peerWorkspaceId: optional(WorkspaceId)
}) {}

/** A tunnel ended; `bytesUp` flowed from the reaching side to the service, `bytesDown` back. */
export class TunnelClosed extends Schema.TaggedClass<TunnelClosed>()("TunnelClosed", {
  tunnelId: TunnelId,
  serviceId: ServiceId,
  bytesUp: Count,
  bytesDown: Count,
  durationMs: Count,
  reason: TunnelCloseReason,
  /** Through a share: the share, and the reacher's workspace (as in its `TunnelOpened`). */
  viaShareId: optional(ShareId),
  peerWorkspaceId: optional(WorkspaceId)
}) {}

/**
 * A request to reach a service by name was refused and no tunnel was opened. Refusals of one agent for one reason
 * are coalesced per window: the first is recorded at once, the rest of the window as one event with `count`, the
 * window's first and last refusal, and a capped sample of the names asked for (one event per name would let random
 * names defeat the coalescing). Without `count` the event stands for one refusal.
 */
export class ReachDenied extends Schema.TaggedClass<ReachDenied>()("ReachDenied", {
  requestedName: Schema.String,
  fromAgentId: optional(AgentId),
  reason: ReachDeniedReason,
  /** Refusals this event stands for (absent: 1). */
  count: optional(Schema.Int.pipe(Schema.positive())),
  /** First and last refusal of a coalesced window. */
  firstAt: optional(Timestamp),
  lastAt: optional(Timestamp),
  /** Up to `REACH_DENIED_SAMPLE` distinct names of the window, `requestedName` first. */
  sample: optional(Schema.Array(Schema.String))
}) {}

/** Most names a coalesced `ReachDenied` keeps as its sample. */
export const REACH_DENIED_SAMPLE = 8
