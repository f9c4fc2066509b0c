/**
 * The hub's side of the `admin` group of core/HubApi.ts: workspaces, API keys and agent revocation through the API,
 * by the same commands (hub/commands/Admin.ts) and with the same events as on the hub's host, recorded with the key
 * as actor and the caller's address. An operator key manages every workspace; a workspace key its own only, and
 * anything beyond is refused (403) and recorded as a refused key (`wrong_scope`).
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { Effect } from "effect"
import type { DomainError } from "../../core/DomainError.ts"
import { EventMeta } from "../../core/Events.ts"
import * as HubApi from "../../core/HubApi.ts"
import * as Admin from "../commands/Admin.ts"
import { answerWithin } from "./AnswerWithin.ts"
import * as HttpEdge from "./HttpEdge.ts"
import { DEFAULT_LIMITS, HubConfig } from "../HubConfig.ts"
import * as AgentsTable from "../readmodels/Agents.ts"
import * as ApiKeys from "../readmodels/ApiKeys.ts"
import * as ServicesTable from "../readmodels/Services.ts"
import { showIp } from "../../core/Mask.ts"

type Caller = typeof HubApi.ApiKeyCaller.Service

/** The meta of an event the key's request causes: the key, the caller's address and user agent. */
const metaOf = (key: Caller) =>
  new EventMeta({
    actor: { kind: "apikey", id: key.apiKeyId },
    sourceIp: key.from.ip,
    ...(key.from.userAgent ? { userAgent: key.from.userAgent } : {})
  })

/** A command the business rules refused, as the answer of its reason. */
const refusal = (error: DomainError) => {
  const message = error.message
  switch (error.reason) {
    case "NotFound":
      return new HubApi.NotFound({ message })
    case "Conflict":
    case "AlreadyExists":
      return new HubApi.Conflict({ message })
    default:
      return new HubApi.Invalid({ message })
  }
}

/** A failure of the database or the log: logged and answered 503 (the hub fails closed without its event log). */
const unavailable = (error: unknown) =>
  Effect.zipRight(
    Effect.logError("admin API: request failed", error),
    new HubApi.Unavailable({ message: "the hub cannot reach its event log; try again" })
  )

/** Refuses (403, recorded) a workspace key acting on another workspace than its own. */
const mayManage = (key: Caller, workspaceId: string | undefined, what: string) =>
  key.scope === "operator" || workspaceId === key.workspaceId
    ? Effect.void
    : key.outOfScope(`this API key manages its own workspace (${key.workspaceId}) only, not ${what}`)

/** A path's id checked as Admin checks ids (a UUID, lower-cased). */
const idOf = (what: string, id: string) => Admin.normaliseId(what, id)

/** The `admin` group's handlers. */
export const AdminRoutes = HttpApiBuilder.group(HubApi.HubApi, "admin", (handlers) =>
  Effect.gen(function*() {
    const config = yield* HubConfig
    const maxBody = (config.limits ?? DEFAULT_LIMITS).maxBodyBytes
    const answered = <A, R>(effect: Effect.Effect<A, any, R>) =>
      (effect as Effect.Effect<A, DomainError | { readonly _tag: "EventLogError" | "VersionConflict" | "SqlError" }, R>)
        .pipe(Effect.catchTags({
          DomainError: refusal,
          EventLogError: unavailable,
          VersionConflict: unavailable,
          SqlError: unavailable
        }))
    return handlers
      .handleRaw("createWorkspace", () =>
        answered(Effect.gen(function*() {
          const key = yield* HubApi.ApiKeyCaller
          if (key.scope !== "operator") yield* key.outOfScope("creating a workspace needs an operator key")
          const body = yield* HttpEdge.jsonBody(HubApi.WorkspaceCreateRequest, maxBody)
          const name = body.name.trim()
          const created = yield* Admin.createWorkspace(name, metaOf(key)).pipe(
            answerWithin("the workspace may still be created (WorkspaceCreated on the log), its first key unseen: issue one with `connect hub apikey create`")
          )
          return {
            workspaceId: created.workspaceId,
            name,
            apiKey: { ...created.apiKey, workspaceId: created.workspaceId }
          }
        })))
      .handleRaw("createApiKey", ({ path }) =>
        answered(Effect.gen(function*() {
          const key = yield* HubApi.ApiKeyCaller
          const workspaceId = yield* idOf("the workspace id", path.workspaceId)
          yield* mayManage(key, workspaceId, `workspace ${workspaceId}`)
          const body = yield* HttpEdge.jsonBody(HubApi.ApiKeyCreateRequest, maxBody)
          const scope = body.scope ?? "workspace"
          if (scope === "operator" && key.scope !== "operator") {
            yield* key.outOfScope("issuing an operator key needs an operator key")
          }
          const issued = yield* Admin.createApiKey(workspaceId, body.name?.trim() ?? "admin", scope, metaOf(key)).pipe(
            answerWithin("the key may still be created, unseen: `connect hub apikey list` shows it, revoke it there")
          )
          return { ...issued, workspaceId }
        })))
      .handle("listApiKeys", ({ path }) =>
        answered(Effect.gen(function*() {
          const key = yield* HubApi.ApiKeyCaller
          const workspaceId = yield* idOf("the workspace id", path.workspaceId)
          yield* mayManage(key, workspaceId, `workspace ${workspaceId}`)
          return { apiKeys: yield* Admin.listApiKeys(workspaceId) }
        })))
      .handle("revokeApiKey", ({ path }) =>
        answered(Effect.gen(function*() {
          const key = yield* HubApi.ApiKeyCaller
          const apiKeyId = yield* idOf("the API key id", path.apiKeyId)
          const row = yield* ApiKeys.byId(apiKeyId)
          if (!row) return yield* new HubApi.NotFound({ message: `API key ${apiKeyId} not found` })
          yield* mayManage(key, row.workspace_id, `API key ${apiKeyId} of another workspace`)
          // The bootstrap operator key lives in a workspace like any other: a workspace key of that workspace may not
          // take it away (it could, and locked the operator out).
          if (row.scope === "operator" && key.scope !== "operator") {
            yield* key.outOfScope("revoking an operator key needs an operator key")
          }
          const { revoked } = yield* Admin.revokeApiKey(apiKeyId, metaOf(key)).pipe(
            answerWithin("the revocation may still be recorded: revoke again to know (it answers whether this one was)")
          )
          return { apiKeyId, revoked }
        })))
      .handle("listAgents", ({ path }) =>
        answered(Effect.gen(function*() {
          const key = yield* HubApi.ApiKeyCaller
          const workspaceId = yield* idOf("the workspace id", path.workspaceId)
          yield* mayManage(key, workspaceId, `workspace ${workspaceId}`)
          const rows = yield* AgentsTable.listInWorkspace(workspaceId)
          return {
            agents: rows.map((r) => ({
              agentId: r.id,
              label: r.label,
              online: r.connected && r.revoked_at === null,
              // A workspace key is answered with the address masked, as the audit API does (audit/Reveal.ts).
              lastIp: key.scope === "operator" ? r.last_ip : showIp(r.last_ip, false),
              tokenExpiresAt: new Date(r.token_expires_at).toISOString(),
              revoked: r.revoked_at !== null,
              createdAt: new Date(r.created_at).toISOString()
            }))
          }
        })))
      .handle("listServices", ({ path }) =>
        answered(Effect.gen(function*() {
          const key = yield* HubApi.ApiKeyCaller
          const workspaceId = yield* idOf("the workspace id", path.workspaceId)
          yield* mayManage(key, workspaceId, `workspace ${workspaceId}`)
          const rows = yield* ServicesTable.listInWorkspace(workspaceId)
          return { services: rows.map((r) => ({ name: r.name, agentId: r.agent_id, agentLabel: r.label, online: r.online })) }
        })))
      .handleRaw("revokeAgent", ({ path }) =>
        answered(Effect.gen(function*() {
          const key = yield* HubApi.ApiKeyCaller
          const agentId = yield* idOf("the agent id", path.agentId)
          const workspaceId = yield* AgentsTable.workspaceOf(agentId)
          if (!workspaceId) return yield* new HubApi.NotFound({ message: `agent ${agentId} not found` })
          yield* mayManage(key, workspaceId, `agent ${agentId} of another workspace`)
          const body = yield* HttpEdge.jsonBody(HubApi.AgentRevokeRequest, maxBody)
          const result = yield* Admin.revokeAgent(agentId, body.reason?.trim(), metaOf(key)).pipe(
            answerWithin("the revocation may still be recorded: revoke again to know (it answers whether this one was)")
          )
          return { agentId, ...result }
        })))
  }))
