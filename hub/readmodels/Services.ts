/**
 * The `services` read model: one row per name in a workspace, with the agent exposing it and whether it is exposed
 * (no longer once unexposed or released). Its inline projection and its queries.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import * as Scoped from "../db/Scoped.ts"
import * as StatementProjection from "./StatementProjection.ts"

/** The projection: upserted by `ServiceExposed`, no longer exposed after `ServiceUnexposed` or `ServiceReleased`. */
export const projection = StatementProjection.make("services", "services", (e) => {
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

/**
 * The exposed service `name` of workspace `workspaceId` with its agent (online: connected and not revoked), and
 * whether the reaching agent `reacherId` is revoked; read under the workspace's row-level security, so another
 * workspace's services do not exist here. Undefined when no such service is exposed.
 */
export const byName = Effect.fn("Services.byName")(function*(workspaceId: string, name: string, reacherId: string) {
  const [row] = yield* Scoped.select<{ agent_id: string; connected: boolean; reacher_revoked: boolean }>(
    workspaceId,
    `select s.agent_id, (a.connected and a.revoked_at is null) as connected,
            exists (select 1 from agents r where r.id = $2 and r.revoked_at is not null) as reacher_revoked
       from services s join agents a on a.id = s.agent_id where s.name = $1 and s.exposed`,
    [name, reacherId]
  )
  return row
})

/** Whether a workspace other than `workspaceId` has a service named `name` (read as the hub, across workspaces). */
export const existsElsewhere = Effect.fn("Services.existsElsewhere")(function*(name: string, workspaceId: string) {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql.unsafe(`select 1 from services where name = $1 and workspace_id <> $2 limit 1`, [
    name,
    workspaceId
  ])
  return rows.length > 0
})

/** The service names agent `agentId` holds exposed, by name (read as the hub). */
export const heldBy = Effect.fn("Services.heldBy")(function*(agentId: string) {
  const sql = yield* SqlClient.SqlClient
  return yield* sql.unsafe<{ id: string; name: string }>(
    `select id, name from services where agent_id = $1 and exposed order by name`,
    [agentId]
  )
})

/** A service as the workspace's API lists it. */
export interface InWorkspace {
  readonly name: string
  readonly agent_id: string
  readonly label: string
  readonly online: boolean
}

/** The exposed services of a workspace with their agents, by name (read under the workspace's row-level security). */
export const listInWorkspace = Effect.fn("Services.listInWorkspace")(function*(workspaceId: string) {
  return yield* Scoped.select<InWorkspace>(
    workspaceId,
    `select s.name, s.agent_id, a.label, (a.connected and a.revoked_at is null) as online
       from services s join agents a on a.id = s.agent_id
      where s.exposed order by s.name`
  )
})
