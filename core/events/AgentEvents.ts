/** The events of an agent: its token's life, its connections, its refused authentications, its allow-list. */
import { Schema } from "effect"
import { AgentId } from "../Ids.ts"
import { Count, Ip, optional, SecretPrefix, Sha256Hex, Timestamp } from "./Fields.ts"

/**
 * Why a presented agent token was refused; `rate_limited`: its address had failed too often, so it was refused
 * without being looked up.
 */
export const AuthFailureReason = Schema.Literal("unknown_token", "expired_token", "revoked_token", "rate_limited")

/** Why an agent's connection ended; `hub_crashed`: its hub died without recording it, and closed it at its next start. */
export const DisconnectReason = Schema.Literal(
  "closed",
  "heartbeat_timeout",
  "protocol_error",
  "transport_error",
  "replaced",
  "token_revoked",
  "token_expired",
  "hub_shutdown",
  "hub_crashed"
)

/**
 * An agent was provisioned with a new token, stored as its SHA-256, valid until `expiresAt`. `ttlSeconds`: the token
 * lifetime asked for (`connect up --ttl`), which its rotated tokens keep; absent, they take the hub's default.
 */
export class AgentProvisioned extends Schema.TaggedClass<AgentProvisioned>()("AgentProvisioned", {
  agentId: AgentId,
  label: Schema.NonEmptyTrimmedString,
  tokenHash: Sha256Hex,
  expiresAt: Timestamp,
  ttlSeconds: optional(Schema.Int.pipe(Schema.positive()))
}) {}

/** An agent rotated its token (`connect up --rotate-token`); the old one stays valid until `oldValidUntil`. */
export class AgentTokenRotated extends Schema.TaggedClass<AgentTokenRotated>()("AgentTokenRotated", {
  agentId: AgentId,
  newTokenHash: Sha256Hex,
  newExpiresAt: Timestamp,
  oldValidUntil: Timestamp
}) {}

/** An agent's tokens were revoked, so every later connection with them is refused. */
export class AgentTokenRevoked extends Schema.TaggedClass<AgentTokenRevoked>()("AgentTokenRevoked", {
  agentId: AgentId,
  reason: optional(Schema.String)
}) {}

/** An agent authenticated and its control connection was accepted over the named transport plugin. */
export class AgentConnected extends Schema.TaggedClass<AgentConnected>()("AgentConnected", {
  agentId: AgentId,
  ip: Ip,
  userAgent: Schema.String,
  transport: Schema.NonEmptyString
}) {}

/** An agent's control connection ended after `durationMs`, for `reason`. */
export class AgentDisconnected extends Schema.TaggedClass<AgentDisconnected>()("AgentDisconnected", {
  agentId: AgentId,
  reason: DisconnectReason,
  durationMs: Count
}) {}

/** An agent connected from a different IP address than on its previous connection. */
export class AgentIpChanged extends Schema.TaggedClass<AgentIpChanged>()("AgentIpChanged", {
  agentId: AgentId,
  previousIp: Ip,
  newIp: Ip
}) {}

/**
 * A connection presented an agent token that was refused; an unknown token has no agent to name. Past an address's
 * limit, its refusals for one reason are coalesced per window into one event with `count` and the window's first
 * and last refusal. Without `count` the event stands for one refusal.
 */
export class AgentAuthFailed extends Schema.TaggedClass<AgentAuthFailed>()("AgentAuthFailed", {
  agentId: optional(AgentId),
  tokenPrefix: optional(SecretPrefix),
  reason: AuthFailureReason,
  ip: Ip,
  /** Refusals this event stands for (absent: 1). */
  count: optional(Schema.Int.pipe(Schema.positive())),
  /** First and last refusal of a coalesced window. */
  firstAt: optional(Timestamp),
  lastAt: optional(Timestamp)
}) {}

/**
 * An admin set the targets an agent may expose (addresses, CIDR ranges, host names, `*.domain`); without `allow` the
 * list was cleared and the agent may expose anything but cloud metadata addresses again.
 */
export class AgentAllowListSet extends Schema.TaggedClass<AgentAllowListSet>()("AgentAllowListSet", {
  agentId: AgentId,
  allow: optional(Schema.Array(Schema.NonEmptyTrimmedString).pipe(Schema.minItems(1)))
}) {}
