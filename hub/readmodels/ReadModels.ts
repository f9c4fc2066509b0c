/**
 * The core read models as inline projections, one table each: `workspaces`, `api_keys`, `agents`, `services`. They run
 * inside the append transaction (the API reads its own writes), take every timestamp from the event's
 * `recorded_at` (so a rebuild reproduces them exactly), and sit behind row-level security (see `Scoped.ts`).
 */
import { Effect } from "effect"
import type { StoredEvent } from "../../core/EventLog.ts"
import type { Projection } from "../../core/Projection.ts"
import { ProjectionSql } from "../../core/ProjectionSql.ts"

type Statement = readonly [string, ReadonlyArray<unknown>]

/** A projection that turns each relevant event into SQL statements, run in order. */
const make = (
  name: string,
  table: string,
  statements: (e: StoredEvent) => ReadonlyArray<Statement>
): Projection<ProjectionSql> => ({
  name,
  mode: "inline",
  tables: [table],
  apply: (events) =>
    Effect.gen(function*() {
      const sql = yield* ProjectionSql
      for (const e of events) {
        for (const [text, params] of statements(e)) yield* sql.execute(text, params)
      }
    }),
  reset: Effect.flatMap(ProjectionSql, (sql) => sql.execute(`delete from ${table}`))
})

/** `workspaces`: id, name, created_at. */
export const workspaces = make("workspaces", "workspaces", (e) =>
  e.event._tag === "WorkspaceCreated"
    ? [[
      `insert into workspaces (id, name, created_at) values ($1, $2, $3) on conflict (id) do nothing`,
      [e.event.workspaceId, e.event.name, e.recordedAt]
    ]]
    : [])

/** `api_keys`: prefix and SHA-256 of every key, never the key. */
export const apiKeys = make("api_keys", "api_keys", (e) => {
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

/**
 * `agents`: label, current and previous token hash with their validity, revocation, last IP, connected, and the
 * allow list of targets it may expose.
 */
export const agents = make("agents", "agents", (e) => {
  const ev = e.event
  switch (ev._tag) {
    case "AgentProvisioned":
      return [[
        `insert into agents (id, workspace_id, label, token_hash, token_expires_at, created_at)
         values ($1, $2, $3, $4, $5, $6)`,
        [ev.agentId, e.workspaceId, ev.label, ev.tokenHash, ev.expiresAt, e.recordedAt]
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

/**
 * `services`: one row per name in a workspace, with the agent exposing it and whether it is exposed (no longer once
 * unexposed or released).
 */
export const services = make("services", "services", (e) => {
  const ev = e.event
  switch (ev._tag) {
    case "ServiceExposed":
      return [[
        `insert into services (id, workspace_id, agent_id, name, target_host, target_port, exposed, updated_at)
         values ($1, $2, $3, $4, $5, $6, true, $7)
         on conflict (id) do update set agent_id = excluded.agent_id, target_host = excluded.target_host,
           target_port = excluded.target_port, exposed = true, updated_at = excluded.updated_at`,
        [ev.serviceId, e.workspaceId, ev.agentId, ev.name, ev.targetHost, ev.targetPort, e.recordedAt]
      ]]
    case "ServiceUnexposed":
    case "ServiceReleased":
      return [[`update services set exposed = false, updated_at = $2 where id = $1`, [ev.serviceId, e.recordedAt]]]
    default:
      return []
  }
})

/** Every core read model, in the order they are applied. */
export const projections: ReadonlyArray<Projection<ProjectionSql>> = [workspaces, apiKeys, agents, services]
