/**
 * The hub program as layers, in start order: database → services on it (event log, ...) → HTTP server → what attaches
 * to the server (routes, gateway) → the "listening" line. Scopes close in reverse: the server stops accepting before
 * the services stop, and Postgres stops last.
 */
import * as Http from "node:http"
import type * as HttpPlatform from "@effect/platform/HttpPlatform"
import * as HttpServer from "@effect/platform/HttpServer"
import type { ServeError } from "@effect/platform/HttpServerError"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import type * as PgClient from "@effect/sql-pg/PgClient"
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Console from "effect/Console"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { MigrationError } from "@effect/sql/Migrator"
import type { SqlError } from "@effect/sql/SqlError"
import type { EventLog, EventLogError } from "../core/EventLog.ts"
import * as Bootstrap from "./Bootstrap.ts"
import * as Database from "./Database.ts"
import * as Migrations from "./Migrations.ts"
import * as PgEventLog from "./PgEventLog.ts"
import * as StreamHeads from "./StreamHeads.ts"
import * as HttpApi from "./HttpApi.ts"
import { HubConfig, type HubConfigShape } from "./HubConfig.ts"

/**
 * The hub's node `http.Server`, so a WebSocket gateway can attach to the same port. Attach with a listener on
 * `"upgrade"` for your own path only: NodeHttpServer also routes upgrades into `HubRouter`.
 */
export class HubHttpServer extends Context.Tag("connect/hub/HubHttpServer")<HubHttpServer, Http.Server>() {}

/** Stage 1 — Postgres: `DATABASE_URL`, else embedded in the data directory. */
export const DatabaseLive = (config: HubConfigShape): Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, Database.DatabaseError> =>
  Database.layer({ dataDir: config.dataDir, databaseUrl: config.databaseUrl })

/**
 * Stage 2 — services built on the database and needed by the HTTP side. Add them here in dependency order, e.g.
 * `Layer.provideMerge(Migrations.layer)`, then EventLog, Bootstrap; they may use `HubConfig`, `PgClient`, `SqlClient`.
 */
export const ServicesLive = (
  _config: HubConfigShape
): Layer.Layer<EventLog, SqlError | MigrationError | EventLogError, HubConfig | PgClient.PgClient | SqlClient.SqlClient> =>
  Bootstrap.layer.pipe(
    Layer.provideMerge(PgEventLog.layer({ inline: InlineProjections })),
    Layer.provideMerge(Migrations.layer)
  )

/** The read models kept inside the append transaction, so the API reads its own writes. */
export const InlineProjections = [StreamHeads.projection]

/** Stage 3 — the HTTP server listening on `host:port`, with the underlying node server as `HubHttpServer`. */
export const HttpServerLive = (
  config: HubConfigShape
): Layer.Layer<HubHttpServer | HttpServer.HttpServer | HttpPlatform.HttpPlatform, ServeError> =>
  Layer.unwrapEffect(
    Effect.sync(() => {
      const server = Http.createServer()
      return Layer.merge(
        Layer.succeed(HubHttpServer, server),
        NodeHttpServer.layer(() => server, { port: config.port, host: config.host })
      )
    })
  )

/**
 * Stage 4 — everything that attaches to the server: route layers (`HubRouter.use(...)`) and, later, the agent gateway
 * (which gets `HubHttpServer`). Append yours to the list.
 */
export const RoutesLive: Layer.Layer<never, never, SqlClient.SqlClient> = Layer.mergeAll(HttpApi.HealthRoutes)

/** Serves `HubRouter`, prints where the hub listens, and on shutdown closes idle keep-alive connections first. */
const ServeLive = (
  config: HubConfigShape
): Layer.Layer<never, never, HttpServer.HttpServer | HubHttpServer> =>
  Layer.scopedDiscard(
    Effect.gen(function*() {
      const address = yield* HttpServer.HttpServer.pipe(Effect.map((server) => server.address))
      const server = yield* HubHttpServer
      const url = address._tag === "TcpAddress" ? `http://${config.host}:${address.port}` : `unix:${address.path}`
      yield* Console.log(`connect hub listening on ${url} (postgres: ${Database.describe(config)})`)
      // Finalizers run in reverse: this one runs before the server's close(), which waits for open connections.
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          server.closeIdleConnections()
          setTimeout(() => server.closeAllConnections(), 2_000).unref()
        })
      )
    })
  ).pipe(Layer.provide(HttpApi.HubRouter.serve()))

/** The whole hub for `config`; `Layer.launch(HubLive(config))` runs it until interrupted. */
export const HubLive = (
  config: HubConfigShape
): Layer.Layer<
  HubConfig | PgClient.PgClient | SqlClient.SqlClient | HubHttpServer | HttpServer.HttpServer | EventLog,
  Database.DatabaseError | ServeError | SqlError | MigrationError | EventLogError
> =>
  ServeLive(config).pipe(
    Layer.provide(RoutesLive),
    Layer.provideMerge(HttpServerLive(config)),
    Layer.provideMerge(ServicesLive(config)),
    Layer.provideMerge(DatabaseLive(config)),
    Layer.provideMerge(Layer.succeed(HubConfig, config))
  )
