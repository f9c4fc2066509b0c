/**
 * The narrow SQL a projection writes its read model through: one parameterized statement at a time, on whatever
 * connection the caller runs it in. Write-only: no projection reads while it applies (inside the append writer a read
 * would cost a round trip under the append lock). The append writer backs it with its own connection's pipeline
 * (writes go with the commit, see `PgPipeline`); the projection runner backs it with the `SqlClient` transaction of a
 * rebuild or an async batch.
 */
import { SqlClient } from "@effect/sql"
import { Context, Effect } from "effect"

/** Runs statements on the connection of the surrounding transaction. */
export class ProjectionSql extends Context.Tag("connect/core/ProjectionSql")<
  ProjectionSql,
  {
    /**
     * Runs a statement whose rows are not needed (a read model's insert, update or delete). The append writer sends it
     * with the commit, so Postgres's refusal surfaces there; statements still run in the order given.
     */
    readonly execute: (text: string, params?: ReadonlyArray<unknown>) => Effect.Effect<void, unknown>
  }
>() {}

/** Backed by a `SqlClient`: a statement joins the transaction of the fiber that runs it. */
const fromSqlClient: Effect.Effect<ProjectionSql["Type"], never, SqlClient.SqlClient> = Effect.map(
  SqlClient.SqlClient,
  (sql) =>
    ProjectionSql.of({
      execute: (text, params = []) => Effect.asVoid(sql.unsafe(text, params as Array<unknown>))
    })
)

/** Provides `ProjectionSql` from the `SqlClient` in context. */
export const provideFromSqlClient = <A, E, R>(
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E, Exclude<R, ProjectionSql> | SqlClient.SqlClient> =>
  Effect.flatMap(fromSqlClient, (service) => Effect.provideService(effect, ProjectionSql, service))
