/**
 * The shape of the core read models' inline projections: each relevant event becomes SQL statements on one table,
 * run in order through `ProjectionSql`. Every timestamp comes from the event's `recorded_at`, so a rebuild reproduces
 * the table exactly.
 */
import { Effect } from "effect"
import type { StoredEvent } from "../../core/EventLog.ts"
import type { Projection } from "../../core/Projection.ts"
import { ProjectionSql } from "../../core/ProjectionSql.ts"

/** One parameterized statement. */
export type Statement = readonly [string, ReadonlyArray<unknown>]

/** An inline projection named `name` writing `table`, turning each relevant event into statements run in order. */
export const make = (
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
