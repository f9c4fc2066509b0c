/**
 * The shares group: services of one workspace reached from another.
 * Part of the hub API declared in core/HubApi.ts.
 */
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import { Schema } from "effect"
import { Errors } from "./Errors.ts"
import { AgentTokenAuth, ApiKeyAuth } from "./Auth.ts"
import { Label, Timestamp } from "./Common.ts"

/**
 * `POST /v1/shares`: a share of `services` (names of the key's workspace's exposed services) with the options of
 * `connect share create` as typed there (checked by the hub: a bad one is a 400 naming it): `expires` (`7d`, default
 * 7 days), `name` (`acme-contractor`), `rateLimit` (`60/min`, opens through the share).
 */
export const ShareCreateRequest = Schema.Struct({
  services: Schema.Array(Schema.String.pipe(Schema.maxLength(200))).pipe(Schema.minItems(1), Schema.maxItems(64)),
  expires: Schema.optionalWith(Schema.String.pipe(Schema.maxLength(40)), { exact: true }),
  name: Schema.optionalWith(Label, { exact: true }),
  rateLimit: Schema.optionalWith(Schema.String.pipe(Schema.maxLength(40)), { exact: true })
}).annotations({ parseOptions: { onExcessProperty: "error" } })

/** One share as listed: never its code, only its prefix. `status` is `active`, `expired` or `revoked`. */
export const ShareInfo = Schema.Struct({
  shareId: Schema.String,
  name: Schema.NullOr(Schema.String),
  codePrefix: Schema.NullOr(Schema.String),
  services: Schema.Array(Schema.String),
  expiresAt: Timestamp,
  rateLimit: Schema.NullOr(Schema.String),
  createdAt: Timestamp,
  revokedAt: Schema.NullOr(Timestamp),
  status: Schema.Literal("active", "expired", "revoked"),
  /** Agents that joined it. */
  joined: Schema.Number
})

/** `POST /v1/shares/join`: the code an agent was given (at most 200 characters; a share code is 35). */
export const ShareJoinRequest = Schema.Struct({ code: Schema.String.pipe(Schema.maxLength(200)) })
  .annotations({ parseOptions: { onExcessProperty: "error" } })

/** Shares: created, listed and revoked by the owner's API key; joined by an agent of another workspace. */
export class Shares extends HttpApiGroup.make("shares")
  .add(
    HttpApiEndpoint.post("create", "/v1/shares")
      .setPayload(ShareCreateRequest)
      .addSuccess(Schema.Struct({ code: Schema.String, share: ShareInfo }), { status: 201 })
      .middleware(ApiKeyAuth)
  )
  .add(
    HttpApiEndpoint.get("list", "/v1/shares")
      .addSuccess(Schema.Struct({ shares: Schema.Array(ShareInfo) }))
      .middleware(ApiKeyAuth)
  )
  .add(
    HttpApiEndpoint.post("revoke", "/v1/shares/:shareId/revoke")
      .setPath(Schema.Struct({ shareId: Schema.String }))
      .addSuccess(Schema.Struct({ shareId: Schema.String, revoked: Schema.Boolean }))
      .middleware(ApiKeyAuth)
  )
  .add(
    HttpApiEndpoint.post("join", "/v1/shares/join")
      .setPayload(ShareJoinRequest)
      .addSuccess(Schema.Struct({ share: ShareInfo, owner: Schema.String, joined: Schema.Boolean }))
      .middleware(AgentTokenAuth)
  )
  .addError(Errors.Invalid)
  .addError(Errors.NotFound)
  .addError(Errors.Revoked)
{}
