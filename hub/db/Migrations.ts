/**
 * The hub's database schema as numbered migrations run through @effect/sql's Migrator, one file each under
 * `migrations/`: the append-only `events` table with its triggers, projection checkpoints, the read models of the core
 * projections, and the grants of the hub's runtime role (`connect_writer`). Migrations run as the owner role; the hub
 * runs as a member of connect_writer.
 */
import * as Migrator from "@effect/sql/Migrator"
import { SqlClient } from "@effect/sql"
import { Effect, Layer, Schedule } from "effect"
import { describeCause } from "../../core/ErrorMessage.ts"
import events from "./migrations/0001_events.ts"
import streamHeads from "./migrations/0002_stream_heads.ts"
import appendHead from "./migrations/0003_append_head.ts"
import readModels from "./migrations/0004_read_models.ts"
import agentAllowList from "./migrations/0005_agent_allow_list.ts"
import chainCheck from "./migrations/0006_chain_check.ts"
import writerRole from "./migrations/0007_writer_role.ts"
import shadowRebuild from "./migrations/0008_shadow_rebuild.ts"
import oneRoundTripAppend from "./migrations/0009_one_round_trip_append.ts"
import auditIndexes from "./migrations/0010_audit_indexes.ts"
import auditRollups from "./migrations/0011_audit_rollups.ts"
import apiKeyScope from "./migrations/0012_api_key_scope.ts"
import accessIndex from "./migrations/0013_access_index.ts"
import sourceIpParallelRestricted from "./migrations/0014_source_ip_parallel_restricted.ts"
import shares from "./migrations/0015_shares.ts"
import links from "./migrations/0016_links.ts"
import consoleDenied from "./migrations/0020_console_denied.ts"
import sourceIpParallelUnsafe from "./migrations/0021_source_ip_parallel_unsafe.ts"
import agentTokenTtl from "./migrations/0022_agent_token_ttl.ts"
import consoleSignInRollups from "./migrations/0024_console_signin_rollups.ts"
import pacedNotify from "./migrations/0028_paced_notify.ts"
import auditReadWindows from "./migrations/0030_audit_read_windows.ts"

// The keys are the ids and names every migrated database has recorded in connect_migrations, and the SQL a database
// ran is what a new one must run: a released migration is never renamed or edited, a change is a new one.
const migrations: Record<string, Effect.Effect<void, unknown, SqlClient.SqlClient>> = {
  "0001_events": events,
  "0002_stream_heads": streamHeads,
  "0003_append_head": appendHead,
  "0004_read_models": readModels,
  "0005_agent_allow_list": agentAllowList,
  "0006_chain_check": chainCheck,
  "0007_writer_role": writerRole,
  "0008_shadow_rebuild": shadowRebuild,
  "0009_one_round_trip_append": oneRoundTripAppend,
  "0010_audit_indexes": auditIndexes,
  "0011_audit_rollups": auditRollups,
  "0012_api_key_scope": apiKeyScope,
  "0013_access_index": accessIndex,
  "0014_source_ip_parallel_restricted": sourceIpParallelRestricted,
  "0015_shares": shares,
  "0016_links": links,
  "0020_console_denied": consoleDenied,
  "0021_source_ip_parallel_unsafe": sourceIpParallelUnsafe,
  "0022_agent_token_ttl": agentTokenTtl,
  "0024_console_signin_rollups": consoleSignInRollups,
  "0028_paced_notify": pacedNotify,
  "0030_audit_read_windows": auditReadWindows
}

/** The number of the newest migration: a database whose `connect_migrations` holds it needs nothing from this build. */
export const latest = Math.max(...Object.keys(migrations).map((name) => Number(name.slice(0, 4))))

const TABLE = "connect_migrations"

const idOf = (name: string) => Number(name.slice(0, 4))

/**
 * Refuses a database that has not recorded a migration of `record` although it recorded a higher one: a migration
 * whose number was handed out before another's but that landed later. The Migrator runs only ids above the newest
 * recorded one, so such a database would silently never get it; and it cannot simply be run now, since it was written
 * for the schema before its successors: run over theirs it can undo them (an attacker's review showed 0014 applied
 * late turning 0021's parallel-unsafe function back to parallel restricted, which broke `connect audit --ip`).
 */
const refuseMissed = (record: Record<string, Effect.Effect<void, unknown, SqlClient.SqlClient>>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const applied = new Set(
      (yield* sql.unsafe<{ id: number }>(`select migration_id as id from ${TABLE}`)).map((row) => Number(row.id))
    )
    const newest = Math.max(0, ...applied)
    const missed = Object.keys(record).filter((name) => !applied.has(idOf(name)) && idOf(name) < newest).sort()
    if (missed.length === 0) return
    return yield* new Migrator.MigrationError({
      reason: "failed",
      message: `this database has migration ${String(newest).padStart(4, "0")} but not ${missed.join(", ")}, ` +
        `numbered below it: the hub does not apply a migration after newer ones, which it could undo. Check ` +
        `${missed.length > 1 ? "them" : "it"} against the newer migrations, apply by hand as the owner role and ` +
        `insert ${missed.length > 1 ? "their rows" : "its row"} into ${TABLE}, or restore a backup (README: ` +
        `"Migrations out of order")`
    })
  })

const runRecord = (record: Record<string, Effect.Effect<void, unknown, SqlClient.SqlClient>>) =>
  Migrator.make({})({ loader: Migrator.fromRecord(record), table: TABLE }).pipe(
    // Two processes creating the migrations table at the same moment can collide on the catalog; the loser retries
    // and then waits on the table lock the winner holds.
    Effect.retry({ times: 3, schedule: Schedule.spaced("200 millis") }),
    Effect.zipRight(refuseMissed(record)),
    Effect.withSpan("Migrations.run")
  )

/**
 * Runs every pending migration numbered up to `last` (what a build that ended there would run: the upgrade tests'
 * older database), and refuses a database that missed one below its newest; safe to call from several hub processes
 * at once.
 */
export const upTo = (last: number) =>
  runRecord(Object.fromEntries(Object.entries(migrations).filter(([name]) => idOf(name) <= last)))

/** Runs every pending migration; safe to call from several hub processes at once. */
export const run = upTo(Number.MAX_SAFE_INTEGER)

/** The newest migration applied to the connected database (0 when none): readable by the hub's runtime role. */
export const current: Effect.Effect<number, never, SqlClient.SqlClient> = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql.unsafe<{ id: number | null }>(`select max(migration_id) as id from ${TABLE}`).pipe(
    Effect.map((rows) => rows[0]?.id ?? 0),
    Effect.orElseSucceed(() => 0)
  ))

/** The ids of this build's migrations the connected database has not recorded (all of them when it has none). */
export const missing: Effect.Effect<ReadonlyArray<number>, never, SqlClient.SqlClient> = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) =>
    sql.unsafe<{ id: number }>(`select migration_id as id from ${TABLE}`).pipe(
      Effect.map((rows) => new Set(rows.map((row) => Number(row.id)))),
      Effect.orElseSucceed(() => new Set<number>()),
      Effect.map((applied) => Object.keys(migrations).map(idOf).filter((id) => !applied.has(id)))
    )
)

/**
 * A layer that migrates the database when built, unless it has every migration already: the hub's runtime role can
 * read `connect_migrations` but may not lock it, so a database migrated by the owner role (see `Database`) is left
 * alone.
 */
export const layer: Layer.Layer<never, Migrator.MigrationError | import("@effect/sql").SqlError.SqlError, SqlClient.SqlClient> =
  Layer.effectDiscard(Effect.flatMap(missing, (ids) =>
    ids.length === 0 ? Effect.void : Effect.zipRight(
      // First, read-only: a database missing one below its newest is refused with what to do, also when this role could
      // not run migrations at all (the hub's runtime role: it would fail on the lock with a permission error).
      refuseMissed(migrations).pipe(Effect.catchTag("SqlError", () => Effect.void)),
      run
    )))
