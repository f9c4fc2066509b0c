/** The events of a public HTTP link onto a service: created, revoked, and each request through it. */
import { Schema } from "effect"
import { LinkId, ServiceId } from "../Ids.ts"
import { AccessOutcome, Count, HttpMethod, Ip, optional, Sha256Hex, Timestamp } from "./Fields.ts"

/** Why a public-link request was refused or failed. */
export const LinkDeniedReason = Schema.Literal(
  "expired",
  "revoked",
  "method_not_allowed",
  "path_not_allowed",
  "rate_limited",
  "agent_offline",
  "upstream_error",
  "log_unavailable"
)

/** A public HTTP link onto a service was created, limited by expiry, methods, path prefixes and a rate limit. */
export class LinkCreated extends Schema.TaggedClass<LinkCreated>()("LinkCreated", {
  linkId: LinkId,
  tokenHash: Sha256Hex,
  serviceId: ServiceId,
  expiresAt: Timestamp,
  methods: Schema.Array(HttpMethod).pipe(Schema.minItems(1)),
  pathPrefixes: Schema.Array(Schema.String.pipe(Schema.startsWith("/"))).pipe(Schema.minItems(1)),
  rateLimitPerMinute: Schema.Int.pipe(Schema.positive())
}) {}

/** A public link was revoked; its URL answers as not found from then on. */
export class LinkRevoked extends Schema.TaggedClass<LinkRevoked>()("LinkRevoked", {
  linkId: LinkId
}) {}

/** A request arrived through a public link and was answered with `status` after `durationMs`. */
export class LinkAccessed extends Schema.TaggedClass<LinkAccessed>()("LinkAccessed", {
  linkId: LinkId,
  ip: Ip,
  method: Schema.String,
  path: Schema.String,
  status: Schema.Int.pipe(Schema.between(100, 599)),
  outcome: AccessOutcome,
  reason: optional(LinkDeniedReason),
  bytes: Count,
  durationMs: Count
}) {}
