/**
 * The `shares` and `share_grants` read models: one row per share (its code's SHA-256, services, expiry, rate limit,
 * revocation) and one per agent that joined one. Their inline projection and their queries: the owner's listing under
 * its row-level security, and the hub's own look-ups (a code, an agent's grants), which cross workspaces by nature.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import type { Projection } from "../../core/Projection.ts"
import { ProjectionSql } from "../../core/ProjectionSql.ts"
import * as Scoped from "../db/Scoped.ts"

/** The projection: a row per `ShareCreated`, revoked by `ShareRevoked`; a grant row per `ShareJoined`. */
export const projection: Projection<ProjectionSql> = {
  name: "shares",
  mode: "inline",
  tables: ["shares", "share_grants"],
  apply: (events) =>
    Effect.gen(function*() {
      const sql = yield* ProjectionSql
      for (const e of events) {
        const ev = e.event
        switch (ev._tag) {
          case "ShareCreated":
            yield* sql.execute(
              `insert into shares (id, workspace_id, name, code_hash, code_prefix, services, expires_at, rate_limit,
                                   rate_window_s, created_at)
               values ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10) on conflict (id) do nothing`,
              [
                ev.shareId,
                e.workspaceId,
                ev.name ?? null,
                ev.codeHash,
                ev.codePrefix ?? null,
                JSON.stringify(ev.services),
                ev.expiresAt,
                ev.rateLimit?.limit ?? null,
                ev.rateLimit?.windowSeconds ?? null,
                e.recordedAt
              ]
            )
            break
          case "ShareRevoked":
            yield* sql.execute(`update shares set revoked_at = $2 where id = $1 and revoked_at is null`, [
              ev.shareId,
              e.recordedAt
            ])
            break
          case "ShareJoined":
            yield* sql.execute(
              `insert into share_grants (share_id, agent_id, workspace_id, peer_workspace_id, joined_at)
               values ($1, $2, $3, $4, $5) on conflict do nothing`,
              [ev.shareId, ev.agentId, e.workspaceId, ev.peerWorkspaceId, e.recordedAt]
            )
            break
        }
      }
    }),
  reset: Effect.flatMap(ProjectionSql, (sql) =>
    Effect.zipRight(sql.execute(`delete from share_grants`), sql.execute(`delete from shares`)))
}

/** A share as stored. */
export interface ShareRow {
  readonly id: string
  readonly workspace_id: string
  readonly workspace_name: string | null
  readonly name: string | null
  readonly code_prefix: string | null
  readonly services: ReadonlyArray<{ readonly serviceId: string; readonly name: string }>
  readonly expires_at: Date
  readonly rate_limit: number | null
  readonly rate_window_s: number | null
  readonly created_at: Date
  readonly revoked_at: Date | null
  readonly joined: number
}

const COLUMNS = `s.id, s.workspace_id, w.name as workspace_name, s.name, s.code_prefix, s.services, s.expires_at,
  s.rate_limit, s.rate_window_s, s.created_at, s.revoked_at,
  (select count(*)::int from share_grants g where g.share_id = s.id) as joined`

/** The share whose code has SHA-256 `codeHash` (read as the hub: the code is what names it). */
export const byCodeHash = Effect.fn("Shares.byCodeHash")(function*(codeHash: string) {
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* sql.unsafe<ShareRow>(
    `select ${COLUMNS} from shares s left join workspaces w on w.id = s.workspace_id where s.code_hash = $1`,
    [codeHash]
  )
  return row
})

/** The shares of a workspace, newest first (under its row-level security). */
export const listInWorkspace = Effect.fn("Shares.listInWorkspace")(function*(workspaceId: string) {
  return yield* Scoped.select<ShareRow>(
    workspaceId,
    `select ${COLUMNS} from shares s left join workspaces w on w.id = s.workspace_id order by s.created_at desc, s.id`
  )
})

/** Share `shareId` of workspace `workspaceId` (under its row-level security), if it has one. */
export const inWorkspace = Effect.fn("Shares.inWorkspace")(function*(workspaceId: string, shareId: string) {
  const [row] = yield* Scoped.select<ShareRow>(
    workspaceId,
    `select ${COLUMNS} from shares s left join workspaces w on w.id = s.workspace_id where s.id = $1`,
    [shareId]
  )
  return row
})

/**
 * The shares agent `agentId` joined that share a service named `name`, live or not (the hub tells why it refuses),
 * oldest grant first (read as the hub: a grant crosses workspaces).
 */
export const grantsFor = Effect.fn("Shares.grantsFor")(function*(agentId: string, name: string) {
  const sql = yield* SqlClient.SqlClient
  return yield* sql.unsafe<ShareRow>(
    `select ${COLUMNS} from share_grants g join shares s on s.id = g.share_id
       left join workspaces w on w.id = s.workspace_id
      where g.agent_id = $1 and s.services @> $2::jsonb
      order by g.joined_at, s.id`,
    [agentId, JSON.stringify([{ name }])]
  )
})

/** Whether agent `agentId` holds any grant from workspace `ownerId` (read as the hub). */
export const hasGrantFrom = Effect.fn("Shares.hasGrantFrom")(function*(agentId: string, ownerId: string) {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql.unsafe<{ id: string }>(
    `select g.share_id as id from share_grants g where g.agent_id = $1 and g.workspace_id = $2 limit 1`,
    [agentId, ownerId]
  )
  return rows[0]?.id
})

/** A service another workspace shares with an agent: its name, owner and whether its agent is online. */
export interface SharedService {
  readonly name: string
  readonly share_id: string
  readonly owner_id: string
  readonly owner_name: string | null
  readonly agent_id: string | null
  readonly online: boolean
}

/**
 * The services live shares (neither revoked nor expired at `now`) grant to agent `agentId`, or to any agent of
 * workspace `workspaceId` when `agentId` is undefined (read as the hub: they are other workspaces' services).
 */
export const sharedWith = Effect.fn("Shares.sharedWith")(function*(
  workspaceId: string,
  agentId: string | undefined,
  now: Date
) {
  const sql = yield* SqlClient.SqlClient
  return yield* sql.unsafe<SharedService>(
    `select distinct on (x.name, s.id) x.name, s.id as share_id, s.workspace_id as owner_id, w.name as owner_name,
            v.agent_id, coalesce(v.exposed and a.connected and a.revoked_at is null, false) as online
       from share_grants g join shares s on s.id = g.share_id
       left join workspaces w on w.id = s.workspace_id
       cross join lateral jsonb_to_recordset(s.services) as x("serviceId" uuid, name text)
       left join services v on v.id = x."serviceId"
       left join agents a on a.id = v.agent_id
      where g.peer_workspace_id = $1 and ($2::uuid is null or g.agent_id = $2::uuid)
        and s.revoked_at is null and s.expires_at > $3
      order by x.name, s.id`,
    [workspaceId, agentId ?? null, now]
  )
})
