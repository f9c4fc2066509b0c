/**
 * The events of a share: a code granting agents of other workspaces reach to some services, an agent joining with it,
 * each use of it (allowed or refused), and its revocation.
 *
 * A share's events live in its owner's workspace (the envelope's `workspace_id`); the events that concern a joining
 * workspace also carry it (`peerWorkspaceId`; `byWorkspaceId` in `ShareAccessed`), which the log copies into its `peer_workspace_id` column (migration
 * 0015) so that the joiner's API keys read them under row-level security too.
 */
import { Schema } from "effect"
import { AgentId, ServiceId, ShareId, WorkspaceId } from "../Ids.ts"
import { AccessOutcome, Ip, optional, ServiceName, SharePermission, Sha256Hex, Timestamp } from "./Fields.ts"

/**
 * Why a use of a share was refused: its time ran out, it was revoked, its rate limit was reached, the service asked
 * for is not one it shares, the code matches no share (or is not a code at all), or the joiner is in the owner's
 * own workspace.
 */
export const ShareDeniedReason = Schema.Literal(
  "expired",
  "revoked",
  "rate_limited",
  "not_shared",
  "unknown_code",
  "own_workspace"
)

/** A service shared by a share: its id and its name at the time of sharing. */
export const SharedService = Schema.Struct({ serviceId: ServiceId, name: ServiceName })

/** A share's rate limit: at most `limit` opens per `windowSeconds`, counted over every agent that joined it. */
export const ShareRateLimit = Schema.Struct({
  limit: Schema.Int.pipe(Schema.positive()),
  windowSeconds: Schema.Int.pipe(Schema.positive())
})

/** A share code granting other workspaces `permissions` on some services until `expiresAt` was created. */
export class ShareCreated extends Schema.TaggedClass<ShareCreated>()("ShareCreated", {
  shareId: ShareId,
  codeHash: Sha256Hex,
  /** The first characters of the code (`sh_` and 5 more), to recognise it; never the code. */
  codePrefix: optional(Schema.String.pipe(Schema.maxLength(11))),
  services: Schema.Array(SharedService).pipe(Schema.minItems(1)),
  expiresAt: Timestamp,
  permissions: Schema.Array(SharePermission).pipe(Schema.minItems(1)),
  /** A name for people (`acme-contractor`). */
  name: optional(Schema.String),
  rateLimit: optional(ShareRateLimit)
}) {}

/** A share was revoked; its code and every grant made with it are refused from then on, its tunnels closed. */
export class ShareRevoked extends Schema.TaggedClass<ShareRevoked>()("ShareRevoked", {
  shareId: ShareId
}) {}

/** An agent of another workspace presented the share's code and holds a grant of its services from then on. */
export class ShareJoined extends Schema.TaggedClass<ShareJoined>()("ShareJoined", {
  shareId: ShareId,
  agentId: AgentId,
  peerWorkspaceId: WorkspaceId
}) {}

/**
 * A share was used: a code presented (`join`) or a tunnel asked for through a grant (`open`), allowed or refused.
 * Refusals a stranger can repeat are coalesced per share (or code), agent and reason per window, like `ReachDenied`:
 * the first is recorded at once, the rest as one event with `count` and the window's first and last refusal.
 * `shareId` is absent when the code matched no share.
 */
export class ShareAccessed extends Schema.TaggedClass<ShareAccessed>()("ShareAccessed", {
  shareId: optional(ShareId),
  /** What was attempted (absent in events of older builds: unknown). */
  action: optional(Schema.Literal("join", "open")),
  /** The agent that presented the code or reached through the grant. */
  agentId: optional(AgentId),
  /** Its workspace (the joiner's): copied into the log's `peer_workspace_id`. */
  byWorkspaceId: optional(WorkspaceId),
  serviceName: optional(Schema.String),
  ip: optional(Ip),
  outcome: AccessOutcome,
  reason: optional(ShareDeniedReason),
  /** Refusals this event stands for (absent: 1). */
  count: optional(Schema.Int.pipe(Schema.positive())),
  firstAt: optional(Timestamp),
  lastAt: optional(Timestamp)
}) {}
