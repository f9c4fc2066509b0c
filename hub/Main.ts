/**
 * The hub program as layers, in start order: database → services on it (event log, ...) → HTTP server → what attaches
 * to the server (routes, gateway) → the "listening" line. Scopes close in reverse: the server stops accepting before
 * the services stop, and Postgres stops last.
 */
import type { Api } from "@effect/platform/HttpApi"
import type * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import type { ServeError } from "@effect/platform/HttpServerError"
import type * as PgClient from "@effect/sql-pg/PgClient"
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type { MigrationError } from "@effect/sql/Migrator"
import type { SqlError } from "@effect/sql/SqlError"
import { EventLog } from "../core/EventLog.ts"
import type { EventLogError } from "../core/EventLog.ts"
import type { SigningKeyError } from "../core/SigningKeys.ts"
import * as AgentAuth from "./commands/AgentAuth.ts"
import * as Bootstrap from "./commands/Bootstrap.ts"
import * as Checkpointer from "./checkpoints/Checkpointer.ts"
import * as Database from "./db/Database.ts"
import * as Migrations from "./db/Migrations.ts"
import * as PgEventLog from "./eventlog/PgEventLog.ts"
import * as ProjectionRunner from "./eventlog/ProjectionRunner.ts"
import type { Projection } from "../core/Projection.ts"
import type { ProjectionSql } from "../core/ProjectionSql.ts"
import * as ReadModels from "./readmodels/ReadModels.ts"
import * as StreamHeads from "./readmodels/StreamHeads.ts"
import * as Gateway from "./relay/Gateway.ts"
import * as HubSpool from "./relay/HubSpool.ts"
import * as HubId from "./eventlog/HubId.ts"
import * as HttpApi from "./http/HttpApi.ts"
import * as HttpEdge from "./http/HttpEdge.ts"
import { HubConfig, type HubConfigShape } from "./HubConfig.ts"
import * as Metrics from "./metrics/Metrics.ts"
import * as ObservedLog from "./ObservedLog.ts"
import * as HubServer from "./http/HubServer.ts"
import * as LinkNotices from "./http/LinkNotices.ts"

/** Stage 1 — Postgres: `DATABASE_URL`, else embedded in the data directory. */
export const DatabaseLive = (config: HubConfigShape): Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, Database.DatabaseError> =>
  Database.layer({ dataDir: config.dataDir, databaseUrl: config.databaseUrl })

/**
 * Stage 2 — services built on the database and needed by the HTTP side. Add them here in dependency order, e.g.
 * `Layer.provideMerge(Migrations.layer)`, then EventLog, Bootstrap; they may use `HubConfig`, `PgClient`, `SqlClient`.
 */
export const ServicesLive = (
  _config: HubConfigShape,
  observe = false
): Layer.Layer<EventLog, SqlError | MigrationError | EventLogError | SigningKeyError, HubConfig | PgClient.PgClient | SqlClient.SqlClient> =>
  // The checkpointer after the bootstrap; its last checkpoint is signed at shutdown, after the server stopped.
  Checkpointer.layerConfig.pipe(
    Layer.provideMerge(Bootstrap.layer),
    Layer.provideMerge(
      (observe ? ObservedLog.layer : Layer.service(EventLog)).pipe(
        Layer.provide(StampedLog.pipe(Layer.provide(PgLog)))
      )
    ),
    Layer.provideMerge(Migrations.layer)
  )

/** The Postgres event log with the inline read models; its writer's batches counted when the hub has metrics. */
const PgLog = Layer.unwrapEffect(
  Effect.map(Effect.serviceOption(Metrics.HubMetrics), (metrics) =>
    PgEventLog.layer({
      inline: INLINE_PROJECTIONS,
      ...(Option.isSome(metrics) ? { onBatch: metrics.value.batch } : {})
    }))
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
export const INLINE_PROJECTIONS = [StreamHeads.projection, ...ReadModels.projections]

/** What stage-4 layers may require (and what `HubLive` provides): config, database, services, HTTP server. */
export type HubContext =
  | HubConfig
  | PgClient.PgClient
  | SqlClient.SqlClient
  | EventLog
  | AgentAuth.TokenSettings
  | HubServer.HubHttpServer
  | HubServer.HubUpgrades
  | HubServer.HubRawRoutes
  | HttpServer.HttpServer

/**
 * Stage 4 — everything that attaches to the server: the HTTP API and the routes beside it (HttpApi.ts) and the agent
 * gateway (`HubUpgrades.register("/v1/agent", handler)`). Append yours to the list. Both record facts through the one
 * spool of the hub (HubSpool.ts), which the gateway replays.
 */
export const RoutesLive = (audit: HttpApi.AuditRoutes = HttpApi.AuditNotServed): Layer.Layer<Api, never, HubContext> =>
  Layer.mergeAll(HttpApi.layerWith(audit), Gateway.layer()).pipe(Layer.provide(HubSpool.layer))

/** Serves the HTTP API, prints where the hub listens, and on shutdown closes idle keep-alive connections first. */
const ServeLive = (
  config: HubConfigShape
): Layer.Layer<
  never,
  never,
  Api | HttpServer.HttpServer | HttpRouter.HttpRouter.DefaultServices | HubServer.HubHttpServer
> =>
  Layer.scopedDiscard(
    Effect.gen(function*() {
      const address = yield* HttpServer.HttpServer.pipe(Effect.map((server) => server.address))
      const server = yield* HubServer.HubHttpServer
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
  /** Async projections to follow while the hub runs (audit's rollups, passed in by bin/connect.ts). */
  readonly asyncProjections?: ReadonlyArray<Projection<ProjectionSql>>
  /** The handlers of the API's `audit` group (audit/AuditApi.ts, passed in by bin/connect.ts); default: 404s. */
  readonly auditRoutes?: HttpApi.AuditRoutes
  /** Every append told in the operational log and counted in the metrics (`connect hub`; ObservedLog.ts). */
  readonly observe?: boolean
  /** Serve Prometheus metrics there (`--metrics-port`, `--metrics-host`); default: no metrics. */
  readonly metrics?: Metrics.ServeOptions
}

/** The whole hub for `config`; `Layer.launch(HubLive(config))` runs it until interrupted. */
export const HubLive = (
  config: HubConfigShape,
  options: HubOptions = {}
): Layer.Layer<HubContext, Database.DatabaseError | ServeError | SqlError | MigrationError | EventLogError | SigningKeyError> =>
  ServeLive(config).pipe(
    Layer.provide(RoutesLive(options.auditRoutes)),
    // Stage 3 — the hub's port listening on host:port (the node server, upgrades by path).
    Layer.provideMerge(HubServer.layer(config)),
    Layer.merge(ProjectionRunner.layerFollow(options.asyncProjections ?? [])),
    Layer.provideMerge(ServicesLive(config, options.observe)),
    Layer.provideMerge(DatabaseLive(config)),
    Layer.provideMerge(options.metrics ? Metrics.layer(options.metrics) : Layer.empty),
    Layer.provideMerge(
      options.tokenSettings ? Layer.succeed(AgentAuth.TokenSettings, options.tokenSettings) : AgentAuth.layerConfig
    ),
    // One per hub: a link revoked through the API is dropped by the link proxy at once (hub/http/LinkNotices.ts).
    Layer.provideMerge(LinkNotices.layer),
    Layer.provideMerge(Layer.succeed(HubConfig, config))
  )
