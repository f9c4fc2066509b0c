/**
 * The `api_keys` read model (prefix and SHA-256 of every key, never the key): its inline projection and its queries.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import type { StoredEvent } from "../../core/EventLog.ts"
import type { ApiKeyCreated, ApiKeyScope } from "../../core/Events.ts"
import { Streams, WorkspaceId } from "../../core/Ids.ts"
import * as Scoped from "../db/Scoped.ts"
import * as StatementProjection from "./StatementProjection.ts"

/**
 * The scope of a created key: the one its event names, else (a key created before scopes) `operator` for the key the
 * hub's first start created — by the `system/bootstrap` actor, in its workspace's own stream, which only the
 * bootstrap's `no_stream` append writes keys to — and `workspace` for every other. Migration 0012 applies the same
 * rule to the rows it finds.
 */
export const scopeOf = (e: StoredEvent, created: ApiKeyCreated): ApiKeyScope => {
  if (created.scope !== undefined) return created.scope
  const actor = e.meta.actor
  const bootstrap = actor.kind === "system" && actor.id === "bootstrap" &&
    e.stream === Streams.workspace(WorkspaceId.make(created.workspaceId))
  return bootstrap ? "operator" : "workspace"
}

/** The projection: a row per `ApiKeyCreated` with its scope, stamped by its `ApiKeyRevoked`. */
export const projection = StatementProjection.make("api_keys", "api_keys", (e) => {
  switch (e.event._tag) {
    case "ApiKeyCreated":
      return [[
        `insert into api_keys (id, workspace_id, name, prefix, key_hash, created_at, scope)
         values ($1, $2, $3, $4, $5, $6, $7)`,
        [e.event.apiKeyId, e.event.workspaceId, e.event.name, e.event.prefix, e.event.keyHash, e.recordedAt, scopeOf(e, e.event)]
      ]]
    case "ApiKeyRevoked":
      return [[`update api_keys set revoked_at = $2 where id = $1 and revoked_at is null`, [e.event.apiKeyId, e.recordedAt]]]
    default:
      return []
  }
})

/** The key with SHA-256 `keyHash`, if any, as the authentication sees it. */
export interface Credential {
  readonly id: string
  readonly workspace_id: string
  readonly scope: ApiKeyScope
  readonly revoked_at: Date | null
}

/**
 * The key whose SHA-256 is `keyHash`, looked up as `connect_app` through the security-definer function (no workspace
 * is known yet).
 */
export const byHash = Effect.fn("ApiKeys.byHash")(function*(keyHash: string) {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* Scoped.asApp(
    sql.unsafe<Credential>(`select id, workspace_id, scope, revoked_at from connect_api_key_by_hash($1)`, [keyHash])
  )
  return rows[0]
})

/** An API key as listed: never the key or its hash. */
export interface Listed {
  readonly id: string
  readonly name: string
  readonly prefix: string
  readonly scope: ApiKeyScope
  readonly created_at: Date
  readonly revoked_at: Date | null
}

/** The API keys of a workspace, oldest first (read under the workspace's row-level security). */
export const listInWorkspace = Effect.fn("ApiKeys.listInWorkspace")(function*(workspaceId: string) {
  return yield* Scoped.select<Listed>(
    workspaceId,
    `select id, name, prefix, scope, created_at, revoked_at from api_keys order by created_at, id`
  )
})

/** The workspace of API key `apiKeyId` and when it was revoked, if it exists (read as the hub). */
export const byId = Effect.fn("ApiKeys.byId")(function*(apiKeyId: string) {
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* sql.unsafe<{ workspace_id: string; scope: ApiKeyScope; revoked_at: Date | null }>(
    `select workspace_id, scope, revoked_at from api_keys where id = $1`,
    [apiKeyId]
  )
  return row
})
