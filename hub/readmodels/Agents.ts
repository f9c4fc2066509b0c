/**
 * The `agents` read model: label, current and previous token hash with their validity, revocation, last IP,
 * connected, and the allow list of targets it may expose. Its inline projection and its queries.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import * as Scoped from "../db/Scoped.ts"
import * as StatementProjection from "./StatementProjection.ts"

/** The projection: a row per `AgentProvisioned`, kept up to date by the agent's later events. */
export const projection = StatementProjection.make("agents", "agents", (e) => {
  const ev = e.event
  switch (ev._tag) {
    case "AgentProvisioned":
      return [[
        `insert into agents (id, workspace_id, label, token_hash, token_expires_at, created_at, token_ttl_seconds)
         values ($1, $2, $3, $4, $5, $6, $7)`,
        [ev.agentId, e.workspaceId, ev.label, ev.tokenHash, ev.expiresAt, e.recordedAt, ev.ttlSeconds ?? null]
      ]]
    case "AgentTokenRotated":
      return [[
        `update agents set prev_token_hash = token_hash, prev_token_valid_until = $4, token_hash = $2,
           token_expires_at = $3 where id = $1`,
        [ev.agentId, ev.newTokenHash, ev.newExpiresAt, ev.oldValidUntil]
      ]]
    case "AgentTokenRevoked":
      return [[`update agents set revoked_at = $2 where id = $1 and revoked_at is null`, [ev.agentId, e.recordedAt]]]
    case "AgentConnected":
      return [[
        `update agents set connected = true, connected_at = $2, last_ip = $3 where id = $1`,
        [ev.agentId, e.recordedAt, ev.ip]
      ]]
    case "AgentIpChanged":
      return [[`update agents set last_ip = $2 where id = $1`, [ev.agentId, ev.newIp]]]
    case "AgentAllowListSet":
      return [[`update agents set expose_allow = $2 where id = $1`, [ev.agentId, ev.allow ?? null]]]
    case "AgentDisconnected":
      // A replaced connection ends after its successor connected: the agent is still online.
      return ev.reason === "replaced" ? [] : [[`update agents set connected = false where id = $1`, [ev.agentId]]]
    default:
      return []
  }
})

/** What checking a presented token needs of its agent. */
export interface Credential {
  readonly id: string
  readonly workspace_id: string
  readonly label: string
  readonly token_hash: string
  readonly token_expires_at: Date
  readonly prev_token_hash: string | null
  readonly prev_token_valid_until: Date | null
  readonly revoked_at: Date | null
  /** The lifetime the agent was provisioned with (`--ttl`); null: the hub's default. */
  readonly token_ttl_seconds: number | null
}

/**
 * The agent whose current or previous token has SHA-256 `tokenHash`, looked up as `connect_app` through the
 * security-definer function (no workspace is known yet).
 */
export const byTokenHash = Effect.fn("Agents.byTokenHash")(function*(tokenHash: string) {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* Scoped.asApp(sql.unsafe<Credential>(`select * from connect_agent_by_token($1)`, [tokenHash]))
  return rows[0]
})

/** The workspace of agent `agentId`, if it exists (read as the hub, across workspaces). */
export const workspaceOf = Effect.fn("Agents.workspaceOf")(function*(agentId: string) {
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* sql.unsafe<{ workspace_id: string }>(`select workspace_id from agents where id = $1`, [agentId])
  return row?.workspace_id
})

/** Whether agent `agentId` is revoked (read as the hub). */
export const isRevoked = Effect.fn("Agents.isRevoked")(function*(agentId: string) {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql.unsafe(`select 1 from agents where id = $1 and revoked_at is not null`, [agentId])
  return rows.length > 0
})

/**
 * Whether agent `agentId` of workspace `workspaceId` is revoked and the targets it may expose (null: anything but
 * cloud metadata addresses), read under the workspace's row-level security; undefined when it is not there.
 */
export const exposeRights = Effect.fn("Agents.exposeRights")(function*(workspaceId: string, agentId: string) {
  const [row] = yield* Scoped.select<{ revoked: boolean; expose_allow: Array<string> | null }>(
    workspaceId,
    `select revoked_at is not null as revoked, expose_allow from agents where id = $1`,
    [agentId]
  )
  return row
})

/** An agent as the workspace's API lists it. */
export interface InWorkspace {
  readonly id: string
  readonly label: string
  readonly connected: boolean
  readonly last_ip: string | null
  readonly token_expires_at: Date
  readonly revoked_at: Date | null
  readonly created_at: Date
}

/** The agents of a workspace, oldest first (read under the workspace's row-level security). */
export const listInWorkspace = Effect.fn("Agents.listInWorkspace")(function*(workspaceId: string) {
  return yield* Scoped.select<InWorkspace>(
    workspaceId,
    `select id, label, connected, last_ip, token_expires_at, revoked_at, created_at
       from agents order by created_at, id`
  )
})

/** An agent as the hub admin lists it. */
export interface Listed {
  readonly agentId: string
  readonly workspaceId: string
  readonly label: string
  readonly online: boolean
  readonly lastIp: string | null
  readonly tokenExpiresAt: string
  readonly revokedAt: string | null
  /** The targets it may expose; null: anything but cloud metadata addresses. */
  readonly exposeAllow: ReadonlyArray<string> | null
}

/** Every agent of every workspace, oldest first (read as the hub). */
export const listAll = Effect.fn("Agents.listAll")(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql.unsafe<{
    id: string
    workspace_id: string
    label: string
    connected: boolean
    last_ip: string | null
    token_expires_at: Date
    revoked_at: Date | null
    expose_allow: Array<string> | null
  }>(
    `select id, workspace_id, label, connected, last_ip, token_expires_at, revoked_at, expose_allow
       from agents order by created_at, id`
  )
  return rows.map((r): Listed => ({
    agentId: r.id,
    workspaceId: r.workspace_id,
    label: r.label,
    online: r.connected && r.revoked_at === null,
    lastIp: r.last_ip,
    tokenExpiresAt: new Date(r.token_expires_at).toISOString(),
    revokedAt: r.revoked_at ? new Date(r.revoked_at).toISOString() : null,
    exposeAllow: r.expose_allow
  }))
})

/** Agents the read model shows connected whose last `AgentConnected` was recorded by hub `hubId` (or by no hub). */
export const connectedVia = Effect.fn("Agents.connectedVia")(function*(hubId: string) {
  const sql = yield* SqlClient.SqlClient
  return yield* sql.unsafe<{ id: string; workspace_id: string; connected_at: Date | null }>(
    `select a.id, a.workspace_id, a.connected_at from agents a
        where a.connected
          and coalesce((select e.meta->>'hubId' from events e
                         where e.stream = 'agent-' || a.id and e.type = 'AgentConnected'
                         order by e.version desc limit 1), $1) = $1`,
    [hubId]
  )
})
