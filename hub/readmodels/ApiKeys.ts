/**
 * The `api_keys` read model (prefix and SHA-256 of every key, never the key): its inline projection and its queries.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import * as Scoped from "../db/Scoped.ts"
import * as StatementProjection from "./StatementProjection.ts"

/** The projection: a row per `ApiKeyCreated`, stamped by its `ApiKeyRevoked`. */
export const projection = StatementProjection.make("api_keys", "api_keys", (e) => {
  switch (e.event._tag) {
    case "ApiKeyCreated":
      return [[
        `insert into api_keys (id, workspace_id, name, prefix, key_hash, created_at) values ($1, $2, $3, $4, $5, $6)`,
        [e.event.apiKeyId, e.event.workspaceId, e.event.name, e.event.prefix, e.event.keyHash, e.recordedAt]
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
  readonly revoked_at: Date | null
}

/**
 * The key whose SHA-256 is `keyHash`, looked up as `connect_app` through the security-definer function (no workspace
 * is known yet).
 */
export const byHash = Effect.fn("ApiKeys.byHash")(function*(keyHash: string) {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* Scoped.asApp(
    sql.unsafe<Credential>(`select id, workspace_id, revoked_at from connect_api_key_by_hash($1)`, [keyHash])
  )
  return rows[0]
})

/** An API key as listed: never the key or its hash. */
export interface Listed {
  readonly id: string
  readonly name: string
  readonly prefix: string
  readonly created_at: Date
  readonly revoked_at: Date | null
}

/** The API keys of a workspace, oldest first (read under the workspace's row-level security). */
export const listInWorkspace = Effect.fn("ApiKeys.listInWorkspace")(function*(workspaceId: string) {
  const sql = yield* SqlClient.SqlClient
  return yield* Scoped.withWorkspace(
    workspaceId,
    sql.unsafe<Listed>(`select id, name, prefix, created_at, revoked_at from api_keys order by created_at, id`)
  )
})

/** The workspace of API key `apiKeyId` and when it was revoked, if it exists (read as the hub). */
export const byId = Effect.fn("ApiKeys.byId")(function*(apiKeyId: string) {
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* sql.unsafe<{ workspace_id: string; revoked_at: Date | null }>(
    `select workspace_id, revoked_at from api_keys where id = $1`,
    [apiKeyId]
  )
  return row
})
