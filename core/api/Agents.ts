/**
 * The agents and services groups: provisioning, token rotation, listing.
 * Part of the hub API declared in core/HubApi.ts.
 */
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import { Schema } from "effect"
import { Errors } from "./Errors.ts"
import { AgentTokenAuth, ApiKeyAuth, WorkspaceAuth } from "./Auth.ts"
import { Label, Timestamp } from "./Common.ts"

/** `POST /v1/agents`: the new agent's label (the hub's default: "agent"). */
export const ProvisionRequest = Schema.Struct({
  label: Schema.optionalWith(Label, { exact: true }),
  /** The token's lifetime as `connect up --ttl` takes it (`15m`, `7d`; 5m–30d, checked by the hub: a 400 names the range). */
  ttl: Schema.optionalWith(Schema.String.pipe(Schema.maxLength(40)), { exact: true })
})

/** A provisioned agent; its token is shown this once. */
export const Provisioned = Schema.Struct({
  agentId: Schema.String,
  workspaceId: Schema.String,
  token: Schema.String,
  expiresAt: Timestamp
})

/** A rotated token; the previous one stays valid until `oldValidUntil`. */
export const Rotated = Schema.Struct({ token: Schema.String, expiresAt: Timestamp, oldValidUntil: Timestamp })

/** One agent of the workspace. */
export const AgentInfo = Schema.Struct({
  agentId: Schema.String,
  label: Schema.String,
  online: Schema.Boolean,
  lastIp: Schema.NullOr(Schema.String),
  tokenExpiresAt: Timestamp,
  revoked: Schema.Boolean,
  createdAt: Timestamp
})

/** One exposed service of the workspace, or one another workspace shares with it (`shared`). */
export const ServiceInfo = Schema.Struct({
  name: Schema.String,
  agentId: Schema.String,
  agentLabel: Schema.String,
  online: Schema.Boolean,
  /** Shared by another workspace: the share and the owner workspace's id and name. */
  shared: Schema.optionalWith(
    Schema.Struct({ shareId: Schema.String, workspaceId: Schema.String, workspaceName: Schema.String }),
    { exact: true }
  )
})

/** One exposed service of the workspace. */
export type ServiceInfo = typeof ServiceInfo.Type

/** Agents: provisioned with an API key, rotating their own token, listed for an API key. */
export class Agents extends HttpApiGroup.make("agents")
  .add(
    HttpApiEndpoint.post("provision", "/v1/agents")
      .setPayload(ProvisionRequest)
      .addSuccess(Provisioned, { status: 201 })
      .middleware(ApiKeyAuth)
  )
  .add(HttpApiEndpoint.post("rotate", "/v1/agents/rotate").addSuccess(Rotated).middleware(AgentTokenAuth))
  .add(
    HttpApiEndpoint.get("list", "/v1/agents")
      .addSuccess(Schema.Struct({ agents: Schema.Array(AgentInfo) }))
      .middleware(ApiKeyAuth)
  )
  // The refusals of the agent decider (core/DomainError.ts), by reason.
  .addError(Errors.Invalid)
  .addError(Errors.Revoked)
  .addError(Errors.NotFound)
  .addError(Errors.AlreadyExists)
  .addError(Errors.Conflict)
{}

/** Services: what the workspace exposes, for its API keys and its agents. */
export class Services extends HttpApiGroup.make("services").add(
  HttpApiEndpoint.get("list", "/v1/services")
    .addSuccess(Schema.Struct({ services: Schema.Array(ServiceInfo) }))
    .middleware(WorkspaceAuth)
) {}
