/**
 * The hub's Postgres connection: `DATABASE_URL` when set, else an embedded Postgres in the hub's data directory,
 * with a startup connectivity check so a bad database fails the hub at startup rather than on its first request.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import Pg from "pg"
import * as EmbeddedPostgres from "./EmbeddedPostgres.ts"

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

/** One line naming what went wrong under a pg / node error, which is often an AggregateError with no message. */
export const describeCause = (cause: unknown): string => {
  const seen = new Set<unknown>()
  const walk = (u: unknown): string | undefined => {
    if (u === null || u === undefined || seen.has(u)) return undefined
    seen.add(u)
    if (u instanceof AggregateError) {
      const inner = u.errors.map(walk).filter((s): s is string => !!s)
      if (inner.length > 0) return [...new Set(inner)].join("; ")
    }
    if (u instanceof Error) {
      const message = u.message.trim()
      const nested = "cause" in u ? walk(u.cause) : undefined
      if (message && nested && !message.includes(nested)) return `${message}: ${nested}`
      if (message) return message
      if (nested) return nested
      const code = (u as { code?: unknown }).code
      return typeof code === "string" ? code : u.name
    }
    return typeof u === "string" ? u : undefined
  }
  return (walk(cause) ?? "unknown error").replace(/\s+/g, " ")
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
  readonly databaseUrl?: string | undefined
  /** Use a running hub's embedded Postgres instead of refusing to share its data directory (offline commands). */
  readonly attach?: boolean | undefined
}

/** The hub's database: `databaseUrl` (from `DATABASE_URL`) when given, else embedded Postgres under `dataDir`. */
export const layer = (options: Options): Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, DatabaseError> =>
  options.databaseUrl
    ? layerChecked(pgClientConfig(options.databaseUrl), `${describeUrl(options.databaseUrl)} (DATABASE_URL)`)
    : layerEmbedded(options.dataDir, options.attach ?? false)

/** Embedded Postgres in `<dataDir>/pg`, started before and stopped after the `PgClient` pool. */
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
      return layerChecked(
        {
          host: server.socketDir,
          port: server.port,
          username: server.user,
          database: server.database,
          types,
          applicationName: "connect-hub"
        },
        `embedded Postgres in ${server.clusterDir}`
      )
    })
  )

/** How the hub's database is described in its startup line (no password). */
export const describe = (options: Options): string =>
  options.databaseUrl
    ? `DATABASE_URL ${describeUrl(options.databaseUrl)}`
    : `embedded at ${EmbeddedPostgres.clusterPath(options.dataDir)}`
