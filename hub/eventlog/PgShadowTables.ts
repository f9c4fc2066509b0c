/**
 * Shadow copies of a projection's tables for a rebuild: created empty beside the live ones (schema `connect_rebuild`,
 * migration 0008), written through the search path so the projection's own SQL fills them, and swapped in at the end,
 * all inside the rebuild's transaction. Creating, dropping and moving tables is the owner's: the hub's role is refused
 * with a message saying so.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { EventLogError } from "../../core/EventLog.ts"

/** The schema the shadows are built in. */
export const SHADOW_SCHEMA = "connect_rebuild"

// Advisory lock class of rebuilds (two-int keys never meet the append lock's single bigint key): one rebuild of a
// projection at a time, since both would build the same shadow names.
const REBUILD_LOCK_CLASS = 0x636f6e6e // "conn"

/** The shadows of one rebuild. */
export interface Shadows {
  /** Runs `effect` with the shadows first on the search path: the projection's unqualified table names are theirs. */
  readonly writing: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, unknown, R | SqlClient.SqlClient>
  /**
   * Drops the live tables and moves the shadows into their place, with the live tables' names, indexes, constraints,
   * policies, row-level security, grants and owner. Run it under the append lock, after the tail.
   */
  readonly swap: Effect.Effect<void, unknown, SqlClient.SqlClient>
}

const refused = (message: string) => new EventLogError({ reason: "Projection", message })

/** Creates empty shadows of `tables` for the rebuild of projection `name`; must run inside the rebuild's transaction. */
export const create = (name: string, tables: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const [schema] = yield* sql.unsafe<{ exists: boolean; may: boolean }>(
      `select to_regnamespace($1) is not null as exists,
              has_database_privilege(current_user, current_database(), 'CREATE') as may`,
      [SHADOW_SCHEMA]
    )
    if (!schema!.exists) {
      if (!schema!.may) {
        return yield* refused(
          `rebuilding ${name} needs the schema ${SHADOW_SCHEMA}, which only a role that may create schemas in this ` +
            `database can add: run it as the database owner`
        )
      }
      yield* sql.unsafe(`create schema if not exists ${SHADOW_SCHEMA}`)
    }
    const [state] = yield* sql.unsafe<{ locked: boolean; owner: boolean; schema: string; path: string }>(
      `select pg_try_advisory_xact_lock($1, hashtext($2)) as locked,
              has_schema_privilege($3, 'CREATE') as owner, current_schema() as schema,
              current_setting('search_path') as path`,
      [REBUILD_LOCK_CLASS, name, SHADOW_SCHEMA]
    )
    if (!state!.owner) {
      return yield* refused(
        `rebuilding ${name} creates and swaps tables, which the hub's role may not do: run it as the database owner ` +
          `(DATABASE_OWNER_URL, or the embedded owner)`
      )
    }
    if (!state!.locked) return yield* refused(`a rebuild of ${name} is already running`)
    for (const table of tables) yield* sql.unsafe(`select connect_shadow_create($1, $2)`, [state!.schema, table])
    const searchPath = (path: string) => sql.unsafe(`select set_config('search_path', $1, true)`, [path])
    return {
      writing: (effect) =>
        Effect.zipRight(searchPath(`${SHADOW_SCHEMA}, ${state!.path}`), Effect.tap(effect, () => searchPath(state!.path))),
      swap: Effect.forEach(tables, (table) => sql.unsafe(`select connect_shadow_swap($1, $2)`, [state!.schema, table]), {
        discard: true
      })
    } satisfies Shadows
  })
