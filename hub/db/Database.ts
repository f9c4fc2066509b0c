/**
 * The hub's Postgres connection: `DATABASE_URL` when set, else an embedded Postgres in the hub's data directory,
 * with a startup connectivity check so a bad database fails the hub at startup rather than on its first request.
 * Two roles: the owner migrates (`DATABASE_OWNER_URL`, or the embedded superuser) and the hub connects as a member of
 * `connect_writer`, which may only append to and read `events`.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Config from "effect/Config"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import Pg from "pg"
import { describeCause } from "../../core/ErrorMessage.ts"
import * as EmbeddedPostgres from "./EmbeddedPostgres.ts"
import * as Migrations from "./Migrations.ts"

/** Why the hub could not get a working database; `message` is one line a user can act on. */
export class DatabaseError extends Schema.TaggedError<DatabaseError>()("DatabaseError", {
  reason: Schema.Literal("Unreachable", "EmbeddedStart", "DataDir"),
  message: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {}

const INT8_OID = 20
const INT8_ARRAY_OID = 1016

const parseInt8 = (value: string): number => Number(value)

/**
 * Type parsers for every connection: `int8`/`bigint` (positions, counters) come back as JS numbers — exact below
 * 2^53, which event positions and byte counters stay under — while `numeric` keeps pg's default (string).
 */
export const types: Pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: "text" | "binary") => {
    if (format !== "binary") {
      if (oid === INT8_OID) return parseInt8
      if (oid === INT8_ARRAY_OID) {
        const parseArray = (Pg.types.getTypeParser as (oid: number, format: "text") => unknown)(INT8_ARRAY_OID, "text") as (value: string) => Array<string | null>
        return (value: string) => parseArray(value).map((item) => (item === null ? null : parseInt8(item)))
      }
    }
    return (Pg.types.getTypeParser as (oid: number, format?: string) => unknown)(oid, format)
  }) as Pg.CustomTypesConfig["getTypeParser"]
}

/** The `PgClient` configuration the hub and the tests use for a connection URL (adds the type parsers). */
export const pgClientConfig = (url: string, overrides?: Partial<PgClient.PgClientConfig>): PgClient.PgClientConfig => ({
  url: Redacted.make(url),
  types,
  applicationName: "connect-hub",
  ...overrides
})

/** `host:port/database` of a connection URL, without user or password, for messages and logs. */
export const describeUrl = (url: string): string => {
  try {
    const parsed = new URL(url)
    const host = parsed.hostname || parsed.searchParams.get("host") || "localhost"
    const database = decodeURIComponent(parsed.pathname.replace(/^\//, "")) || "postgres"
    return `${host}:${parsed.port || "5432"}/${database}`
  } catch {
    return "<unparseable DATABASE_URL>"
  }
}

/** A connection URL with its password replaced by `***`, safe to print. */
export const redactUrl = (url: string): string => {
  try {
    const parsed = new URL(url)
    if (parsed.password) parsed.password = "***"
    return parsed.toString()
  } catch {
    return "<unparseable DATABASE_URL>"
  }
}

// SQLSTATEs that retrying cannot fix: bad password / no such role (28xxx), no such database (3D000).
const isPermanent = (cause: unknown): boolean => {
  const code = (cause as { cause?: { code?: unknown } } | undefined)?.cause?.code
  return typeof code === "string" && (code.startsWith("28") || code === "3D000")
}

/**
 * A `PgClient` layer that must answer `select 1` (PgClient runs it while building) within a bounded retry of ~5 s,
 * so a database still starting up is waited for, and an unreachable one fails the hub at startup.
 */
export const layerChecked = (
  config: PgClient.PgClientConfig,
  where: string
): Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, DatabaseError> =>
  PgClient.layer(config).pipe(
    Layer.retry(
      Schedule.spaced("250 millis").pipe(
        Schedule.upTo("5 seconds"),
        Schedule.whileInput((error: unknown) => !isPermanent(error))
      )
    ),
    Layer.mapError((error) =>
      new DatabaseError({
        reason: "Unreachable",
        message: `Cannot reach Postgres at ${where}: ${describeCause(error.cause ?? error)}`,
        cause: error
      })
    )
  )

/** Options of {@link layer}: the hub's data directory and, optionally, an external database. */
export interface Options {
  readonly dataDir: string
  /** The hub's runtime role (`DATABASE_URL`). */
  readonly databaseUrl?: string | undefined
  /**
   * The owner role that runs migrations on `databaseUrl`'s database (`DATABASE_OWNER_URL`, read from the environment
   * when not given). Without it, the runtime role migrates, and owns `events`: the hub says so loudly.
   */
  readonly databaseOwnerUrl?: string | undefined
  /**
   * An offline command (`connect audit`, `connect hub …`): connects as the runtime role only and migrates nothing as
   * the owner; next to a running hub it uses that hub's embedded Postgres instead of refusing to share its data dir.
   */
  readonly attach?: boolean | undefined
}

const ownerUrlConfig = Config.option(Config.nonEmptyString("DATABASE_OWNER_URL"))

/** The hub's database: `databaseUrl` (from `DATABASE_URL`) when given, else embedded Postgres under `dataDir`. */
export const layer = (options: Options): Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, DatabaseError> =>
  options.databaseUrl
    ? layerExternal(options.databaseUrl, options.databaseOwnerUrl, options.attach ?? false)
    : layerEmbedded(options.dataDir, options.attach ?? false)

const quoteIdent = (name: string): string => `"${name.replace(/"/g, '""')}"`

const migrationFailed = (where: string) => (error: unknown) =>
  new DatabaseError({
    reason: "Unreachable",
    message: `Cannot migrate the database at ${where}: ${describeCause((error as { cause?: unknown }).cause ?? error)}`,
    cause: error
  })

/**
 * Runs `effect` on a short-lived connection as the owner role (closed before the hub starts): migrations, grants.
 */
const asOwner = <A, E>(config: PgClient.PgClientConfig, where: string, effect: Effect.Effect<A, E, SqlClient.SqlClient>) =>
  Effect.scoped(
    Effect.flatMap(Layer.build(layerChecked({ ...config, maxConnections: 1 }, where)), (context) =>
      Effect.provide(effect, context)
    )
  )

/**
 * Says so loudly when the hub's role owns `events` or is a superuser: it could then disable the append-only triggers
 * and rewrite history, and verify would not know.
 */
const warnIfOwner = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* sql.unsafe<{ role: string; superuser: boolean; owner: boolean }>(
    `select current_user as role, r.rolsuper as superuser,
            coalesce(pg_has_role(current_user, (select relowner from pg_class where oid = to_regclass('events')), 'USAGE'),
                     false) as owner
       from pg_roles r where r.rolname = current_user`
  )
  if (row && (row.owner || row.superuser)) {
    yield* Console.error(
      `connect hub: WARNING: the hub's database role "${row.role}" ${row.superuser ? "is a superuser and " : ""}owns ` +
        `the events table (or can act as its owner): it can disable the append-only triggers and rewrite history, ` +
        `and verify would not see it. Run the hub as a role with INSERT and SELECT only: DATABASE_OWNER_URL for the ` +
        `owner (migrations), DATABASE_URL for a role without ownership (README, Configuration).`
    )
  }
}).pipe(Effect.ignore)

/**
 * An external Postgres. With an owner URL the owner migrates and grants `connect_writer` to the runtime role; without
 * one the runtime role migrates itself (and is warned about). Offline commands do neither: they read as the runtime role.
 */
const layerExternal = (
  url: string,
  ownerUrl: string | undefined,
  offline: boolean
): Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, DatabaseError> => {
  const where = `${describeUrl(url)} (DATABASE_URL)`
  const prepare = Layer.effectDiscard(
    Effect.gen(function*() {
      if (offline) return
      const owner = ownerUrl ?? Option.getOrUndefined(yield* Effect.orDie(ownerUrlConfig))
      const sql = yield* SqlClient.SqlClient
      if (owner === undefined) {
        yield* Migrations.layer.pipe(Layer.build, Effect.scoped, Effect.mapError(migrationFailed(where)))
      } else {
        const [{ user }] = (yield* sql.unsafe<{ user: string }>(`select current_user as user`).pipe(
          Effect.mapError(migrationFailed(where))
        )) as unknown as [{ user: string }]
        const ownerWhere = `${describeUrl(owner)} (DATABASE_OWNER_URL)`
        yield* asOwner(
          pgClientConfig(owner),
          ownerWhere,
          Effect.gen(function*() {
            yield* Migrations.run
            const own = yield* SqlClient.SqlClient
            const [{ me }] = (yield* own.unsafe<{ me: string }>(`select current_user as me`)) as unknown as [{ me: string }]
            if (me !== user) yield* own.unsafe(`grant connect_writer to ${quoteIdent(user)}`)
          }).pipe(Effect.mapError((e) => (e instanceof DatabaseError ? e : migrationFailed(ownerWhere)(e))))
        )
      }
      yield* warnIfOwner
    })
  )
  return prepare.pipe(Layer.provideMerge(layerChecked(pgClientConfig(url), where)))
}

/**
 * Embedded Postgres in `<dataDir>/pg`, started before and stopped after the `PgClient` pool. Having started the
 * server, we migrate as its owner and (re)create the hub's role with its password, then connect as that role.
 */
export const layerEmbedded = (
  dataDir: string,
  attach = false
): Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, DatabaseError> =>
  Layer.unwrapScoped(
    Effect.gen(function*() {
      const server = yield* EmbeddedPostgres.make({ dataDir, attach }).pipe(
        Effect.mapError((error) =>
          new DatabaseError({
            reason: error.reason === "DataDir" ? "DataDir" : "EmbeddedStart",
            message: error.message,
            cause: error
          })
        )
      )
      const where = `embedded Postgres in ${server.clusterDir}`
      const base = { host: server.socketDir, port: server.port, database: server.database, types, applicationName: "connect-hub" }
      if (server.started) {
        yield* asOwner(
          { ...base, username: EmbeddedPostgres.OWNER_ROLE, password: Redacted.make(server.secrets.owner) },
          where,
          Effect.gen(function*() {
            yield* Migrations.run
            const sql = yield* SqlClient.SqlClient
            const role = EmbeddedPostgres.HUB_ROLE
            yield* sql.unsafe(`do $$ begin
                if not exists (select from pg_roles where rolname = '${role}') then create role ${role}; end if;
              end $$`)
            // The password is hex (nothing to quote); the statement text is never logged (log_statement = none).
            yield* sql.unsafe(
              `alter role ${role} with login nosuperuser nocreatedb nocreaterole password '${server.secrets.hub}'`
            )
            yield* sql.unsafe(`grant connect_writer to ${role}`)
          }).pipe(Effect.mapError((e) => (e instanceof DatabaseError ? e : migrationFailed(where)(e))))
        )
      }
      return layerChecked(
        { ...base, username: EmbeddedPostgres.HUB_ROLE, password: Redacted.make(server.secrets.hub) },
        where
      )
    })
  )

/**
 * A connection as the owner role (the embedded superuser, or `databaseOwnerUrl` / `databaseUrl`) for tools that
 * create databases or tables of their own, such as the eventlog bench. The hub itself never uses it.
 */
export const layerOwner = (options: Options): Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, DatabaseError> => {
  const url = options.databaseOwnerUrl ?? options.databaseUrl
  if (url) return layerChecked(pgClientConfig(url), describeUrl(url))
  return Layer.unwrapScoped(
    Effect.map(
      EmbeddedPostgres.make({ dataDir: options.dataDir }).pipe(
        Effect.mapError((error) => new DatabaseError({ reason: "EmbeddedStart", message: error.message, cause: error }))
      ),
      (server) =>
        layerChecked(
          {
            host: server.socketDir,
            port: server.port,
            database: server.database,
            username: EmbeddedPostgres.OWNER_ROLE,
            password: Redacted.make(server.secrets.owner),
            types,
            applicationName: "connect-hub"
          },
          `embedded Postgres in ${server.clusterDir}`
        )
    )
  )
}

/** How the hub's database is described in its startup line (no password). */
export const describe = (options: Options): string =>
  options.databaseUrl
    ? `DATABASE_URL ${describeUrl(options.databaseUrl)}`
    : `embedded at ${EmbeddedPostgres.clusterPath(options.dataDir)}`
