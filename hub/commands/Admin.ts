/**
 * Admin operations of the hub, run by `connect hub workspace|apikey|agent|service ...` on the hub's database:
 * workspaces with their first API key, API keys (shown once, kept as prefix + SHA-256), agent revocation (which
 * releases the agent's service names), agents' allow lists, service name releases, and listings. Every change is a
 * command through a decider; listings read the read models.
 */
import { Effect, Schema } from "effect"
import * as AgentDecider from "../../core/AgentDecider.ts"
import * as AllowListDecider from "../../core/AllowListDecider.ts"
import * as ApiKeyDecider from "../../core/ApiKeyDecider.ts"
import { DomainError } from "../../core/DomainError.ts"
import { type ApiKeyScope, EventMeta } from "../../core/Events.ts"
import { AgentId, ApiKeyId, Streams, uuidv7, WorkspaceId } from "../../core/Ids.ts"
import { apiKeyPrefix, generateApiKey, sha256Hex } from "../../core/Secrets.ts"
import * as ServiceDecider from "../../core/ServiceDecider.ts"
import * as WorkspaceDecider from "../../core/WorkspaceDecider.ts"
import * as Command from "./Command.ts"
import * as Agents from "../readmodels/Agents.ts"
import * as ApiKeys from "../readmodels/ApiKeys.ts"
import * as Services from "../readmodels/Services.ts"
import * as Workspaces from "../readmodels/Workspaces.ts"

/** The meta of a change made on the hub's host (`connect hub … --data-dir`); through the API, the key's is passed. */
export const adminMeta = new EventMeta({ actor: { kind: "admin" } })

const isUuid = Schema.is(Schema.UUID)

/**
 * An id as typed, in the form Postgres stores it: lower-case. The uuid columns lower-case what they store while the
 * chain hashes the event as built, so an upper-case id appended as typed would never verify; anything but a UUID in
 * the canonical 8-4-4-4-12 form is refused.
 */
export const normaliseId = (what: string, id: string): Effect.Effect<string, DomainError> =>
  isUuid(id)
    ? Effect.succeed(id.toLowerCase())
    : Effect.fail(new DomainError({ reason: "Invalid", message: `${what} must be a UUID, got ${JSON.stringify(id)}` }))

/** A new API key: its id, prefix and the key itself (shown once, never stored). */
export interface IssuedApiKey {
  readonly apiKeyId: string
  readonly prefix: string
  readonly key: string
  readonly scope: ApiKeyScope
}

/**
 * Issues an API key for an existing workspace: a `workspace` key (the default) reads and manages that workspace only,
 * an `operator` key reads every workspace's log.
 */
export const createApiKey = Effect.fn("Admin.createApiKey")(function*(
  workspaceId: string,
  name = "admin",
  scope: ApiKeyScope = "workspace",
  meta: EventMeta = adminMeta
) {
  workspaceId = yield* normaliseId("the workspace id", workspaceId)
  if (!(yield* Workspaces.exists(workspaceId))) {
    return yield* new DomainError({ reason: "NotFound", message: `workspace ${workspaceId} not found` })
  }
  const apiKeyId = ApiKeyId.make(uuidv7())
  const key = generateApiKey()
  const prefix = apiKeyPrefix(key)
  yield* Command.handle(
    ApiKeyDecider.decider,
    Streams.apiKey(apiKeyId),
    { _tag: "CreateApiKey", apiKeyId, workspaceId: WorkspaceId.make(workspaceId), name, prefix, keyHash: sha256Hex(key), scope },
    { workspaceId, meta }
  )
  return { apiKeyId, prefix, key, scope } satisfies IssuedApiKey
})

/** Creates a workspace and its first admin API key. */
export const createWorkspace = Effect.fn("Admin.createWorkspace")(function*(name: string, meta: EventMeta = adminMeta) {
  const workspaceId = WorkspaceId.make(uuidv7())
  yield* Command.handle(WorkspaceDecider.decider, Streams.workspace(workspaceId), {
    _tag: "CreateWorkspace",
    workspaceId,
    name
  }, { workspaceId, meta })
  const apiKey = yield* createApiKey(workspaceId, "admin", "workspace", meta)
  return { workspaceId, apiKey }
})

/** An API key as listed: never the key or its hash. */
export interface ApiKeyListing {
  readonly apiKeyId: string
  readonly name: string
  readonly prefix: string
  readonly scope: ApiKeyScope
  readonly createdAt: string
  readonly revokedAt: string | null
}

/** The API keys of a workspace, oldest first (read under the workspace's row-level security). */
export const listApiKeys = Effect.fn("Admin.listApiKeys")(function*(workspaceId: string) {
  workspaceId = yield* normaliseId("the workspace id", workspaceId)
  const rows = yield* ApiKeys.listInWorkspace(workspaceId)
  return rows.map((r): ApiKeyListing => ({
    apiKeyId: r.id,
    name: r.name,
    prefix: r.prefix,
    scope: r.scope,
    createdAt: new Date(r.created_at).toISOString(),
    revokedAt: r.revoked_at ? new Date(r.revoked_at).toISOString() : null
  }))
})

/** Revokes an API key (revoking twice records nothing). */
export const revokeApiKey = Effect.fn("Admin.revokeApiKey")(function*(apiKeyId: string, meta: EventMeta = adminMeta) {
  apiKeyId = yield* normaliseId("the API key id", apiKeyId)
  const row = yield* ApiKeys.byId(apiKeyId)
  if (!row) return yield* new DomainError({ reason: "NotFound", message: `API key ${apiKeyId} not found` })
  // A workspace's first key is created in the workspace's own stream (see Bootstrap), so its own stream may be empty.
  const { events } = yield* Command.handle(
    ApiKeyDecider.decider,
    Streams.apiKey(ApiKeyId.make(apiKeyId)),
    { _tag: "RevokeApiKey", apiKeyId: ApiKeyId.make(apiKeyId) },
    {
      workspaceId: row.workspace_id,
      meta,
      initial: { status: row.revoked_at ? "revoked" : "active", workspaceId: row.workspace_id }
    }
  )
  return { revoked: events.length > 0 }
})

/**
 * Revokes an agent's tokens (every later connection or API call with them is refused and audited) and releases the
 * service names it holds, one `ServiceReleased` each; run again, it releases whatever an exposure racing the
 * revocation left behind.
 */
export const revokeAgent = Effect.fn("Admin.revokeAgent")(function*(
  agentId: string,
  reason?: string,
  meta: EventMeta = adminMeta
) {
  agentId = yield* normaliseId("the agent id", agentId)
  const workspaceId = yield* Agents.workspaceOf(agentId)
  if (!workspaceId) return yield* new DomainError({ reason: "NotFound", message: `agent ${agentId} not found` })
  const { events } = yield* Command.handle(
    AgentDecider.decider,
    Streams.agent(AgentId.make(agentId)),
    { _tag: "RevokeAgentToken", agentId: AgentId.make(agentId), ...(reason ? { reason } : {}) },
    { workspaceId, meta }
  )
  const held = yield* Services.heldBy(agentId)
  const released: Array<string> = []
  for (const service of held) {
    const release = yield* Command.handle(
      ServiceDecider.decider,
      Streams.service(ServiceDecider.serviceIdFor(workspaceId, service.name)),
      {
        _tag: "ReleaseService",
        serviceId: ServiceDecider.serviceIdFor(workspaceId, service.name),
        name: service.name,
        reason: "agent_revoked",
        heldBy: AgentId.make(agentId)
      },
      { workspaceId, meta }
    )
    if (release.events.length > 0) released.push(service.name)
  }
  return { revoked: events.length > 0, released }
})

/** Frees a service name in a workspace whichever agent holds it, online or not; recorded as `ServiceReleased`. */
export const releaseService = Effect.fn("Admin.releaseService")(function*(workspaceId: string, name: string) {
  workspaceId = yield* normaliseId("the workspace id", workspaceId)
  const serviceId = ServiceDecider.serviceIdFor(workspaceId, name)
  const { events } = yield* Command.handle(
    ServiceDecider.decider,
    Streams.service(serviceId),
    { _tag: "ReleaseService", serviceId, name, reason: "admin" },
    { workspaceId, meta: adminMeta }
  )
  return { releasedFrom: (events[0] as { readonly agentId: string }).agentId }
})

/**
 * Sets the targets an agent may expose (addresses, CIDR ranges, host names, `*.domain`), enforced by the hub on each
 * expose; `undefined` clears the list (anything but cloud metadata addresses). Setting the same list records nothing.
 */
export const setAllowList = Effect.fn("Admin.setAllowList")(function*(
  agentId: string,
  allow: ReadonlyArray<string> | undefined
) {
  agentId = yield* normaliseId("the agent id", agentId)
  const workspaceId = yield* Agents.workspaceOf(agentId)
  if (!workspaceId) return yield* new DomainError({ reason: "NotFound", message: `agent ${agentId} not found` })
  const { events } = yield* Command.handle(
    AllowListDecider.decider,
    Streams.agent(AgentId.make(agentId)),
    { _tag: "SetAllowList", agentId: AgentId.make(agentId), ...(allow ? { allow } : {}) },
    { workspaceId, meta: adminMeta }
  )
  return { changed: events.length > 0 }
})

/** An agent as `connect hub agent list` prints it; `exposeAllow` undefined when not known (listed through the API). */
export type AgentListing = Omit<Agents.Listed, "exposeAllow"> & { readonly exposeAllow: Agents.Listed["exposeAllow"] | undefined }

/** Every agent of every workspace (the hub admin sees all). */
export const listAgents = Effect.fn("Admin.listAgents")(function*() {
  return yield* Agents.listAll()
})
