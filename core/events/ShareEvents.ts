/** The events of a share: a code granting other workspaces access to services, its revocation, its use. */
import { Schema } from "effect"
import { ServiceId, ShareId, WorkspaceId } from "../Ids.ts"
import { AccessOutcome, optional, ServiceName, SharePermission, Sha256Hex, Timestamp } from "./Fields.ts"

/** Why a share code was refused. */
export const ShareDeniedReason = Schema.Literal("expired", "revoked", "own_workspace", "rate_limited")

/** A service shared by a share: its id and its name at the time of sharing. */
export const SharedService = Schema.Struct({ serviceId: ServiceId, name: ServiceName })

/** A share code granting other workspaces `permissions` on some services until `expiresAt` was created. */
export class ShareCreated extends Schema.TaggedClass<ShareCreated>()("ShareCreated", {
  shareId: ShareId,
  codeHash: Sha256Hex,
  services: Schema.Array(SharedService).pipe(Schema.minItems(1)),
  expiresAt: Timestamp,
  permissions: Schema.Array(SharePermission).pipe(Schema.minItems(1))
}) {}

/** A share was revoked; its code is refused from then on. */
export class ShareRevoked extends Schema.TaggedClass<ShareRevoked>()("ShareRevoked", {
  shareId: ShareId
}) {}

/** A share code was presented, and was accepted or refused. */
export class ShareAccessed extends Schema.TaggedClass<ShareAccessed>()("ShareAccessed", {
  shareId: ShareId,
  byWorkspaceId: optional(WorkspaceId),
  outcome: AccessOutcome,
  reason: optional(ShareDeniedReason)
}) {}
