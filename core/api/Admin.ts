/**
 * The admin group: workspaces, API keys and agent revocation.
 * Part of the hub API declared in core/HubApi.ts.
 */
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import { Schema } from "effect"
import { Errors } from "./Errors.ts"
import { ApiKeyAuth } from "./Auth.ts"
import { Label, Timestamp } from "./Common.ts"
import { AgentInfo, ServiceInfo } from "./Agents.ts"

/** `POST /v1/workspaces`: the new workspace's name (1–200 characters, as a label). */
export const WorkspaceCreateRequest = Schema.Struct({ name: Label })
  .annotations({ parseOptions: { onExcessProperty: "error" } })

/** What an API key may manage: its own workspace, or (`operator`) every workspace and the hub. */
export const ApiKeyScope = Schema.Literal("workspace", "operator")

/** A new API key; the key itself is shown this once (the hub keeps its prefix and SHA-256). */
export const IssuedApiKey = Schema.Struct({
  apiKeyId: Schema.String,
  workspaceId: Schema.String,
  prefix: Schema.String,
  key: Schema.String,
  scope: ApiKeyScope
})

/** A created workspace and its first (workspace-scoped) API key. */
export const WorkspaceCreated = Schema.Struct({ workspaceId: Schema.String, name: Schema.String, apiKey: IssuedApiKey })

/** `POST /v1/workspaces/:workspaceId/apikeys`: the key's name (default "admin") and scope (default workspace). */
export const ApiKeyCreateRequest = Schema.Struct({
  name: Schema.optionalWith(Label, { exact: true }),
  scope: Schema.optionalWith(ApiKeyScope, { exact: true })
}).annotations({ parseOptions: { onExcessProperty: "error" } })

/** An API key as listed: never the key or its hash. */
export const ApiKeyInfo = Schema.Struct({
  apiKeyId: Schema.String,
  name: Schema.String,
  prefix: Schema.String,
  scope: ApiKeyScope,
  createdAt: Timestamp,
  revokedAt: Schema.NullOr(Timestamp)
})

/** `POST /v1/agents/:agentId/revoke`: why, for the audit log (at most 200 characters). */
export const AgentRevokeRequest = Schema.Struct({ reason: Schema.optionalWith(Label, { exact: true }) })
  .annotations({ parseOptions: { onExcessProperty: "error" } })

const WorkspacePath = Schema.Struct({ workspaceId: Schema.String.pipe(Schema.maxLength(100)) })

/**
 * Administration with an API key, recorded with the same events as `connect hub workspace|apikey|agent` on the hub's
 * host: an operator key creates workspaces and manages every workspace, a workspace key its own keys and agents only
 * (anything else is a 403, recorded as a refused key with reason `wrong_scope`). Revocations take effect at once: a
 * revoked key's next request is refused, a revoked agent's connection is closed.
 */
export class Admin extends HttpApiGroup.make("admin")
  .add(
    HttpApiEndpoint.post("createWorkspace", "/v1/workspaces")
      .setPayload(WorkspaceCreateRequest)
      .addSuccess(WorkspaceCreated, { status: 201 })
      .middleware(ApiKeyAuth)
  )
  .add(
    HttpApiEndpoint.post("createApiKey", "/v1/workspaces/:workspaceId/apikeys")
      .setPath(WorkspacePath)
      .setPayload(ApiKeyCreateRequest)
      .addSuccess(IssuedApiKey, { status: 201 })
      .middleware(ApiKeyAuth)
  )
  .add(
    HttpApiEndpoint.get("listApiKeys", "/v1/workspaces/:workspaceId/apikeys")
      .setPath(WorkspacePath)
      .addSuccess(Schema.Struct({ apiKeys: Schema.Array(ApiKeyInfo) }))
      .middleware(ApiKeyAuth)
  )
  .add(
    HttpApiEndpoint.post("revokeApiKey", "/v1/apikeys/:apiKeyId/revoke")
      .setPath(Schema.Struct({ apiKeyId: Schema.String.pipe(Schema.maxLength(100)) }))
      .addSuccess(Schema.Struct({ apiKeyId: Schema.String, revoked: Schema.Boolean }))
      .middleware(ApiKeyAuth)
  )
  .add(
    HttpApiEndpoint.get("listAgents", "/v1/workspaces/:workspaceId/agents")
      .setPath(WorkspacePath)
      .addSuccess(Schema.Struct({ agents: Schema.Array(AgentInfo) }))
      .middleware(ApiKeyAuth)
  )
  .add(
    HttpApiEndpoint.get("listServices", "/v1/workspaces/:workspaceId/services")
      .setPath(WorkspacePath)
      .addSuccess(Schema.Struct({ services: Schema.Array(ServiceInfo) }))
      .middleware(ApiKeyAuth)
  )
  .add(
    HttpApiEndpoint.post("revokeAgent", "/v1/agents/:agentId/revoke")
      .setPath(Schema.Struct({ agentId: Schema.String.pipe(Schema.maxLength(100)) }))
      .setPayload(AgentRevokeRequest)
      .addSuccess(Schema.Struct({ agentId: Schema.String, revoked: Schema.Boolean, released: Schema.Array(Schema.String) }))
      .middleware(ApiKeyAuth)
  )
  .addError(Errors.Invalid)
  .addError(Errors.Forbidden)
  .addError(Errors.NotFound)
  .addError(Errors.Conflict)
{}
