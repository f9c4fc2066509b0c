/**
 * The `workspaces` read model (id, name, created_at): its inline projection and its queries.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import * as StatementProjection from "./StatementProjection.ts"

/** The projection: one row per `WorkspaceCreated`. */
export const projection = StatementProjection.make("workspaces", "workspaces", (e) =>
  e.event._tag === "WorkspaceCreated"
    ? [[
      `insert into workspaces (id, name, created_at) values ($1, $2, $3) on conflict (id) do nothing`,
      [e.event.workspaceId, e.event.name, e.recordedAt]
    ]]
    : [])

/** Whether workspace `workspaceId` exists (read as the hub, across workspaces). */
export const exists = Effect.fn("Workspaces.exists")(function*(workspaceId: string) {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql.unsafe(`select 1 from workspaces where id = $1`, [workspaceId])
  return rows.length > 0
})
