/**
 * A fresh database per test file (or per scope) on the run's Postgres server (see globalSetup.ts), dropped when the
 * scope closes, so tests never see each other's events.
 */
import * as Crypto from "node:crypto"
import * as PgClient from "@effect/sql-pg/PgClient"
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import Pg from "pg"
import { inject } from "vitest"
import * as Database from "../../hub/db/Database.ts"

/** The rows of one `statement` on a connection of its own (`connection`: a URL or pg's client options), closed after. */
export const queryOnce = async <A = any>(connection: string | Pg.ClientConfig, statement: string): Promise<Array<A>> => {
  const client = new Pg.Client(typeof connection === "string" ? { connectionString: connection } : connection)
  await client.connect()
  try {
    return (await client.query(statement)).rows as Array<A>
  } finally {
    await client.end()
  }
}

const adminQuery = (adminUrl: string, statement: string) => Effect.promise(() => queryOnce(adminUrl, statement))

/** The URL of database `name` on the server of `adminUrl`. */
export const databaseUrl = (adminUrl: string, name: string): string => {
  const url = new URL(adminUrl)
  url.pathname = `/${name}`
  return url.toString()
}

/** Creates `connect_t_<random>` on the test server, returns its URL, and drops it (WITH (FORCE)) when the scope closes. */
export const makeTestDatabaseUrl: Effect.Effect<string, never, Scope.Scope> = Effect.gen(function*() {
  const adminUrl = inject("adminDatabaseUrl")
  const name = `connect_t_${Crypto.randomBytes(6).toString("hex")}`
  yield* Effect.acquireRelease(
    adminQuery(adminUrl, `CREATE DATABASE "${name}"`),
    () => adminQuery(adminUrl, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)
  )
  return databaseUrl(adminUrl, name)
})

/** A `PgClient` on a fresh test database, configured like the hub's (int8 as number); `overrides` e.g. pool size. */
export const layerWith = (
  overrides?: Partial<PgClient.PgClientConfig>
): Layer.Layer<PgClient.PgClient | SqlClient.SqlClient> =>
  Layer.unwrapScoped(Effect.map(makeTestDatabaseUrl, (url) => PgClient.layer(Database.pgClientConfig(url, overrides)))).pipe(
    Layer.orDie
  )

/** A `PgClient` on a fresh test database, configured like the hub's (int8 as number). */
export const layer: Layer.Layer<PgClient.PgClient | SqlClient.SqlClient> = layerWith()
