/**
 * Workspace-scoped reads: a transaction running as the `connect_app` role with `app.workspace_id` set, so Postgres
 * row-level security shows the read models' rows of that workspace and nothing else.
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect, Schema } from "effect"

const isUuid = Schema.is(Schema.UUID)

/**
 * Runs `effect` in a transaction as `connect_app` with `app.workspace_id = workspaceId` (both reverting at commit);
 * every query it makes through `SqlClient` sees only that workspace. A malformed id is a defect.
 */
export const withWorkspace = <A, E, R>(
  workspaceId: string,
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | SqlError, R | SqlClient.SqlClient> =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => {
    if (!isUuid(workspaceId)) return Effect.dieMessage(`withWorkspace: not a workspace id: ${workspaceId}`)
    return sql.withTransaction(
      Effect.gen(function*() {
        yield* sql.unsafe(`set local role connect_app`)
        yield* sql.unsafe(`select set_config('app.workspace_id', $1, true)`, [workspaceId])
        return yield* effect
      })
    )
  })

/** Runs `effect` as `connect_app` without a workspace: only the security-definer lookups can find anything. */
export const asApp = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | SqlError, R | SqlClient.SqlClient> =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.withTransaction(Effect.zipRight(sql.unsafe(`set local role connect_app`), effect)))

/** The rows of one `statement` (with `params`) as workspace `workspaceId` sees them (`withWorkspace` around it). */
export const select = <Row extends object>(
  workspaceId: string,
  statement: string,
  params?: ReadonlyArray<unknown>
): Effect.Effect<ReadonlyArray<Row>, SqlError, SqlClient.SqlClient> =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => withWorkspace(workspaceId, sql.unsafe<Row>(statement, params)))
