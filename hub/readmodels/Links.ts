/**
 * The `links` read model: one row per public link with its token's SHA-256 (never the token), its service and limits,
 * stamped when revoked. Its inline projection and its queries.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import * as Scoped from "../db/Scoped.ts"
import * as StatementProjection from "./StatementProjection.ts"

/** The projection: a row per `LinkCreated`, stamped by its `LinkRevoked`. */
export const projection = StatementProjection.make("links", "links", (e) => {
  const ev = e.event
  switch (ev._tag) {
    case "LinkCreated":
      return [[
        `insert into links (id, workspace_id, service_id, service_name, token_hash, expires_at, methods, path_prefixes,
                            rate_limit_per_minute, created_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
        [
          ev.linkId,
          e.workspaceId,
          ev.serviceId,
          ev.serviceName ?? null,
          ev.tokenHash,
          ev.expiresAt,
          ev.methods,
          ev.pathPrefixes,
          ev.rateLimitPerMinute,
          e.recordedAt
        ]
      ]]
    case "LinkRevoked":
      return [[`update links set revoked_at = $2 where id = $1 and revoked_at is null`, [ev.linkId, e.recordedAt]]]
    default:
      return []
  }
})

/** A link as the proxy and the API see it. */
export interface Row {
  readonly id: string
  readonly workspace_id: string
  readonly service_id: string
  readonly service_name: string | null
  readonly expires_at: Date
  readonly methods: ReadonlyArray<string>
  readonly path_prefixes: ReadonlyArray<string>
  readonly rate_limit_per_minute: number
  readonly created_at: Date
  readonly revoked_at: Date | null
}

const COLUMNS = `id, workspace_id, service_id, service_name, expires_at, methods, path_prefixes, rate_limit_per_minute,
  created_at, revoked_at`

/** The link whose token has SHA-256 `tokenHash`, if any (read as the hub: no workspace is known yet). */
export const byTokenHash = Effect.fn("Links.byTokenHash")(function*(tokenHash: string) {
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* sql.unsafe<Row>(`select ${COLUMNS} from links where token_hash = $1`, [tokenHash])
  return row
})

/** The links of a workspace, newest first (read under the workspace's row-level security). */
export const listInWorkspace = Effect.fn("Links.listInWorkspace")(function*(workspaceId: string) {
  return yield* Scoped.select<Row>(workspaceId, `select ${COLUMNS} from links order by created_at desc, id`)
})

/** Link `id` if workspace `workspaceId` has it (read under its row-level security). */
export const inWorkspace = Effect.fn("Links.inWorkspace")(function*(workspaceId: string, id: string) {
  const rows = yield* Scoped.select<Row>(workspaceId, `select ${COLUMNS} from links where id = $1`, [id])
  return rows[0]
})

/** Whether workspace `workspaceId` has (or had) a service named `name` (read under its row-level security). */
export const serviceInWorkspace = Effect.fn("Links.serviceInWorkspace")(function*(workspaceId: string, name: string) {
  const rows = yield* Scoped.select(workspaceId, `select 1 from services where name = $1`, [name])
  return rows.length > 0
})
