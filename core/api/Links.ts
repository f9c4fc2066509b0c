/**
 * The links group: public HTTP links onto a service.
 * Part of the hub API declared in core/HubApi.ts.
 */
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import { Schema } from "effect"
import { Errors } from "./Errors.ts"
import { ApiKeyAuth } from "./Auth.ts"
import { Timestamp } from "./Common.ts"

/**
 * `POST /v1/links`: a public link onto `service` of the key's workspace, with the options of `connect link create` as
 * typed there (checked by the hub, core/LinkRules.ts: a bad one is a 400 naming it): `expires` (`30d`), `methods`
 * (`["GET","HEAD"]`), `paths` (`["/api/v1"]`), `rateLimit` (`100/min`, per client address).
 */
export const LinkCreateRequest = Schema.Struct({
  service: Schema.String.pipe(Schema.maxLength(200)),
  expires: Schema.optionalWith(Schema.String.pipe(Schema.maxLength(40)), { exact: true }),
  methods: Schema.optionalWith(Schema.Array(Schema.String.pipe(Schema.maxLength(20))).pipe(Schema.maxItems(16)), { exact: true }),
  paths: Schema.optionalWith(Schema.Array(Schema.String.pipe(Schema.maxLength(300))).pipe(Schema.maxItems(64)), { exact: true }),
  rateLimit: Schema.optionalWith(Schema.String.pipe(Schema.maxLength(40)), { exact: true })
}).annotations({ parseOptions: { onExcessProperty: "error" } })

/** One public link as listed: never its token. `status` is `active`, `expired` or `revoked`. */
export const LinkInfo = Schema.Struct({
  linkId: Schema.String,
  service: Schema.String,
  status: Schema.Literal("active", "expired", "revoked"),
  expiresAt: Timestamp,
  methods: Schema.Array(Schema.String),
  paths: Schema.Array(Schema.String),
  rateLimitPerMinute: Schema.Number,
  createdAt: Timestamp,
  revokedAt: Schema.NullOr(Timestamp)
})

/** A created link: its URLs and token, shown this once (the hub keeps only the token's SHA-256). */
export const LinkCreatedInfo = Schema.Struct({
  ...LinkInfo.fields,
  token: Schema.String,
  url: Schema.String,
  /** `https://TOKEN.<link domain>/` when the hub runs with `--link-domain`, else null. */
  domainUrl: Schema.NullOr(Schema.String)
})

/** Links: public HTTP links onto the workspace's services, created, listed and revoked with an API key. */
export class Links extends HttpApiGroup.make("links")
  .add(
    HttpApiEndpoint.post("create", "/v1/links")
      .setPayload(LinkCreateRequest)
      .addSuccess(LinkCreatedInfo, { status: 201 })
      .middleware(ApiKeyAuth)
  )
  .add(
    HttpApiEndpoint.get("list", "/v1/links")
      .addSuccess(Schema.Struct({ links: Schema.Array(LinkInfo) }))
      .middleware(ApiKeyAuth)
  )
  .add(
    HttpApiEndpoint.post("revoke", "/v1/links/:linkId/revoke")
      .setPath(Schema.Struct({ linkId: Schema.String }))
      .addSuccess(Schema.Struct({ linkId: Schema.String, revokedAt: Timestamp }))
      .middleware(ApiKeyAuth)
  )
  .addError(Errors.Invalid)
  .addError(Errors.NotFound)
{}
