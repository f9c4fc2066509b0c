/** The events of a public HTTP link onto a service: created, revoked, and each request through it. */
import { Schema } from "effect"
import { LinkId, ServiceId } from "../Ids.ts"
import { AccessOutcome, Count, HttpMethod, Ip, optional, ServiceName, Sha256Hex, Timestamp } from "./Fields.ts"

/** Why a public-link request was refused or failed (`unknown_token`: its token matches no link, or is not a token). */
export const LinkDeniedReason = Schema.Literal(
  "expired",
  "revoked",
  "method_not_allowed",
  "path_not_allowed",
  "bad_path",
  "rate_limited",
  "agent_offline",
  "upstream_error",
  "log_unavailable",
  "unknown_token"
)

/** A public HTTP link onto a service was created, limited by expiry, methods, path prefixes and a rate limit. */
export class LinkCreated extends Schema.TaggedClass<LinkCreated>()("LinkCreated", {
  linkId: LinkId,
  tokenHash: Sha256Hex,
  serviceId: ServiceId,
  expiresAt: Timestamp,
  methods: Schema.Array(HttpMethod).pipe(Schema.minItems(1)),
  pathPrefixes: Schema.Array(Schema.String.pipe(Schema.startsWith("/"))).pipe(Schema.minItems(1)),
  rateLimitPerMinute: Schema.Int.pipe(Schema.positive()),
  /** The service's name when the link was created (the id is derived from workspace and name). */
  serviceName: optional(ServiceName)
}) {}

/** A public link was revoked; its URL answers as not found from then on. */
export class LinkRevoked extends Schema.TaggedClass<LinkRevoked>()("LinkRevoked", {
  linkId: LinkId
}) {}

/**
 * A request arrived through a public link and was answered with `status` after `durationMs`; `bytes` is both ways
 * together, `bytesUp` the request body sent to the service and `bytesDown` the response body sent back. Denials a
 * stranger can repeat (rate limited, expired, revoked, a path or method refused) are coalesced per address, link and
 * reason and window: the first is recorded at once, the rest of the window as one event with `count`, the window's
 * first and last refusal (its `method` and `path` the last one's). Without `count` the event stands for one request.
 * `linkId` is absent when the token matched no link (`unknown_token`, or `rate_limited` for an address past its
 * lookups): those are coalesced per address alone, in no workspace.
 */
export class LinkAccessed extends Schema.TaggedClass<LinkAccessed>()("LinkAccessed", {
  linkId: optional(LinkId),
  ip: Ip,
  method: Schema.String,
  path: Schema.String,
  status: Schema.Int.pipe(Schema.between(100, 599)),
  outcome: AccessOutcome,
  reason: optional(LinkDeniedReason),
  bytes: Count,
  durationMs: Count,
  bytesUp: optional(Count),
  bytesDown: optional(Count),
  serviceId: optional(ServiceId),
  /** Requests this event stands for (absent: 1). */
  count: optional(Schema.Int.pipe(Schema.positive())),
  /** First and last request of a coalesced window. */
  firstAt: optional(Timestamp),
  lastAt: optional(Timestamp)
}) {}
