/** The events of a workspace and its API keys. */
import { Schema } from "effect"
import { ApiKeyId, WorkspaceId } from "../Ids.ts"
import { ApiKeyPrefix, Ip, optional, SecretPrefix, Sha256Hex, Timestamp } from "./Fields.ts"

/**
 * Why a presented API key was refused (`rate_limited` as for agent tokens; `wrong_scope`: a valid key asked for what its
 * scope does not cover, such as a workspace key naming another workspace).
 */
export const ApiKeyAuthFailureReason = Schema.Literal("unknown_api_key", "revoked_api_key", "rate_limited", "wrong_scope")

/** A workspace was created, by an admin or at first start of the hub. */
export class WorkspaceCreated extends Schema.TaggedClass<WorkspaceCreated>()("WorkspaceCreated", {
  workspaceId: WorkspaceId,
  name: Schema.NonEmptyTrimmedString
}) {}

/**
 * What an API key may read and manage: `workspace` (its own workspace, enforced by row-level security) or `operator`
 * (every workspace). Keys created before scopes existed decode without one; `ApiKeys` reads them as `workspace`,
 * except the bootstrap key, which is the operator's.
 */
export const ApiKeyScope = Schema.Literal("workspace", "operator")
/** What an API key may read and manage. */
export type ApiKeyScope = typeof ApiKeyScope.Type

/** An API key was issued for a workspace; only its prefix and SHA-256 are kept, the key is shown once. */
export class ApiKeyCreated extends Schema.TaggedClass<ApiKeyCreated>()("ApiKeyCreated", {
  apiKeyId: ApiKeyId,
  workspaceId: WorkspaceId,
  name: Schema.NonEmptyTrimmedString,
  prefix: ApiKeyPrefix,
  keyHash: Sha256Hex,
  /** Absent on keys created before scopes: see {@link ApiKeyScope}. */
  scope: optional(ApiKeyScope)
}) {}

/** An API key was revoked and is refused from then on. */
export class ApiKeyRevoked extends Schema.TaggedClass<ApiKeyRevoked>()("ApiKeyRevoked", {
  apiKeyId: ApiKeyId
}) {}

/**
 * A request to the HTTP API presented an API key that was refused; coalesced past its address's limit as
 * `AgentAuthFailed` is.
 */
export class ApiKeyAuthFailed extends Schema.TaggedClass<ApiKeyAuthFailed>()("ApiKeyAuthFailed", {
  apiKeyId: optional(ApiKeyId),
  keyPrefix: optional(SecretPrefix),
  reason: ApiKeyAuthFailureReason,
  ip: Ip,
  /** Refusals this event stands for (absent: 1). */
  count: optional(Schema.Int.pipe(Schema.positive())),
  /** First and last refusal of a coalesced window. */
  firstAt: optional(Timestamp),
  lastAt: optional(Timestamp)
}) {}
