/**
 * The hub program as layers, in start order: database → services on it (event log, ...) → HTTP server → what attaches
 * to the server (routes, gateway) → the "listening" line. Scopes close in reverse: the server stops accepting before
 * the services stop, and Postgres stops last.
 */
import * as Http from "node:http"
import * as Https from "node:https"
import type { Duplex } from "node:stream"
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
import type * as Scope from "effect/Scope"
import type { MigrationError } from "@effect/sql/Migrator"
import type { SqlError } from "@effect/sql/SqlError"
import { EventLog } from "../core/EventLog.ts"
import type { EventLogError } from "../core/EventLog.ts"
import * as AgentApi from "./AgentApi.ts"
import * as AgentAuth from "./AgentAuth.ts"
import * as Bootstrap from "./Bootstrap.ts"
import * as Database from "./Database.ts"
import * as Migrations from "./Migrations.ts"
import * as PgEventLog from "./PgEventLog.ts"
import * as ReadModels from "./ReadModels.ts"
import * as StreamHeads from "./StreamHeads.ts"
import * as Gateway from "./Gateway.ts"
import * as HubId from "./HubId.ts"
import * as HttpApi from "./HttpApi.ts"
import * as ClientAddress from "./ClientAddress.ts"
import * as HttpEdge from "./HttpEdge.ts"
import { DEFAULT_LIMITS, HubConfig, type HubConfigShape } from "./HubConfig.ts"

/**
 * The hub's node `http.Server` (one port for HTTP and WebSockets). Do not add your own `"upgrade"` listener to it:
 * register the path with `HubUpgrades` instead, because the server's upgrade dispatch is replaced once routes are served.
 */
export class HubHttpServer extends Context.Tag("connect/hub/HubHttpServer")<HubHttpServer, Http.Server>() {}

/** Handles an HTTP upgrade (e.g. `wss.handleUpgrade(request, socket, head, ...)`) and owns the socket from then on. */
export type UpgradeHandler = (request: Http.IncomingMessage, socket: Duplex, head: Buffer) => void

/**
 * WebSocket upgrades by path: an upgrade whose path (without query) equals a registered path goes to its handler
 * (e.g. the agent gateway's `ws` server); any other upgrade goes to `HubRouter` like a normal request.
 */
export class HubUpgrades extends Context.Tag("connect/hub/HubUpgrades")<HubUpgrades, {
  /** Routes upgrades of `path` to `handler` until the scope closes. */
  readonly register: (path: `/${string}`, handler: UpgradeHandler) => Effect.Effect<void, never, Scope.Scope>
  /** The handler registered for a request URL, if any. */
  readonly match: (url: string | undefined) => UpgradeHandler | undefined
}>() {}

const makeUpgrades = () => {
  const handlers = new Map<string, UpgradeHandler>()
  return HubUpgrades.of({
    register: (path, handler) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          if (handlers.has(path)) throw new Error(`upgrade path ${path} registered twice`)
          handlers.set(path, handler)
        }),
        () => Effect.sync(() => handlers.delete(path))
      ),
    match: (url) => handlers.get((url ?? "/").split("?")[0]!)
  })
}

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
    Layer.provideMerge(StampedLog.pipe(Layer.provide(PgEventLog.layer({ inline: InlineProjections })))),
    Layer.provideMerge(Migrations.layer)
  )

/** The event log with every append's meta naming this hub (its id lives in the data directory; see HubId.ts). */
const StampedLog: Layer.Layer<EventLog, never, EventLog | HubConfig> = Layer.effect(
  EventLog,
  Effect.gen(function*() {
    const config = yield* HubConfig
    const log = yield* EventLog
    return HubId.stamp(log, yield* Effect.orDie(HubId.load(config.dataDir)))
  })
)

/** The read models kept inside the append transaction, so the API reads its own writes. */
export const InlineProjections = [StreamHeads.projection, ...ReadModels.projections]

/** Stage 3 — the HTTP server listening on `host:port`, with the underlying node server as `HubHttpServer`. */
export const HttpServerLive = (
  config: HubConfigShape
): Layer.Layer<HubHttpServer | HubUpgrades | HttpServer.HttpServer | HttpPlatform.HttpPlatform, ServeError> =>
  Layer.unwrapEffect(
    Effect.sync(() => {
      const limits = config.limits ?? DEFAULT_LIMITS
      const options = HttpEdge.serverOptions(limits)
      // An https.Server is an http.Server for everything the hub does with it (requests, upgrades, close).
      const server = config.tls
        ? (Https.createServer({ ...options, ...HttpEdge.tlsOptions(config.tls, limits) }) as unknown as Http.Server)
        : Http.createServer(options)
      HttpEdge.guard(server, limits, ClientAddress.make(config.trustProxy), config.tls !== undefined)
      return Layer.mergeAll(
        Layer.succeed(HubHttpServer, server),
        Layer.succeed(HubUpgrades, makeUpgrades()),
        NodeHttpServer.layer(() => server, { port: config.port, host: config.host })
      )
    })
  )

/** What stage-4 layers may require (and what `HubLive` provides): config, database, services, HTTP server. */
export type HubContext =
  | HubConfig
  | PgClient.PgClient
  | SqlClient.SqlClient
  | EventLog
  | AgentAuth.TokenSettings
  | HubHttpServer
  | HubUpgrades
  | HttpServer.HttpServer

/**
 * Stage 4 — everything that attaches to the server: route layers (`HubRouter.use(...)`: health, the agent API) and the
 * agent gateway (`HubUpgrades.register("/v1/agent", handler)`). Append yours to the list.
 */
export const RoutesLive: Layer.Layer<never, never, HubContext> = Layer.suspend(() =>
  // Suspended: Gateway imports this module's tags, so it may not be evaluated yet when this module is.
  Layer.mergeAll(HttpApi.HealthRoutes, AgentApi.routes, Gateway.layer())
)

/**
 * Serves `HubRouter`, puts `HubUpgrades` in front of its upgrade handling, prints where the hub listens, and on
 * shutdown closes idle keep-alive connections first.
 */
const ServeLive = (
  config: HubConfigShape
): Layer.Layer<never, never, HttpServer.HttpServer | HubHttpServer | HubUpgrades> =>
  Layer.scopedDiscard(
    Effect.gen(function*() {
      const address = yield* HttpServer.HttpServer.pipe(Effect.map((server) => server.address))
      const server = yield* HubHttpServer
      const upgrades = yield* HubUpgrades
      // NodeHttpServer answers every upgrade itself (404 when no route takes it), which would fight a `ws` server on
      // the same socket; so registered paths are dispatched first and only the rest reach HubRouter.
      const routerUpgrades = (server.listeners("upgrade") as Array<UpgradeHandler>).filter((l) => !HttpEdge.isEdgeListener(l))
      for (const listener of routerUpgrades) server.off("upgrade", listener)
      server.on("upgrade", (request: Http.IncomingMessage, socket: Duplex, head: Buffer) => {
        const handler = upgrades.match(request.url)
        if (handler) return handler(request, socket, head)
        for (const listener of routerUpgrades) listener.call(server, request, socket, head)
      })
      const scheme = config.tls ? "https" : "http"
      const url = address._tag === "TcpAddress" ? `${scheme}://${config.host}:${address.port}` : `unix:${address.path}`
      yield* Console.log(`connect hub listening on ${url} (postgres: ${Database.describe(config)})`)
      // Finalizers run in reverse, so this one runs first, before the gateway and the routes close.
      yield* Effect.addFinalizer(() => Effect.sync(() => HttpEdge.shutdown(server, 2_000)))
    })
  ).pipe(Layer.provide(HttpApi.serve))

/** Options of `HubLive` beyond the configuration (tests). */
export interface HubOptions {
  /** Token lifetime and clock (default: `CONNECT_TOKEN_TTL_DAYS` and the system clock). */
  readonly tokenSettings?: AgentAuth.TokenSettingsShape
}

/** The whole hub for `config`; `Layer.launch(HubLive(config))` runs it until interrupted. */
export const HubLive = (
  config: HubConfigShape,
  options: HubOptions = {}
): Layer.Layer<HubContext, Database.DatabaseError | ServeError | SqlError | MigrationError | EventLogError> =>
  ServeLive(config).pipe(
    Layer.provide(RoutesLive),
    Layer.provideMerge(HttpServerLive(config)),
    Layer.provideMerge(ServicesLive(config)),
    Layer.provideMerge(DatabaseLive(config)),
    Layer.provideMerge(
      options.tokenSettings ? Layer.succeed(AgentAuth.TokenSettings, options.tokenSettings) : AgentAuth.layerConfig
    ),
    Layer.provideMerge(Layer.succeed(HubConfig, config))
  )
