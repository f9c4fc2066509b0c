/**
 * `connect hub`: starts the hub (database, services, HTTP server) and runs it until Ctrl-C / SIGTERM.
 */
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as HubConfig from "./HubConfig.ts"
import * as OpsLog from "../core/OpsLog.ts"
import * as OpsLogCli from "../core/OpsLogCli.ts"
import * as MetricsOptions from "./metrics/MetricsOptions.ts"
import * as AdminCli from "./commands/AdminCli.ts"
import * as Checkpointer from "./checkpoints/Checkpointer.ts"
import * as KeyFile from "./checkpoints/KeyFile.ts"
import * as CheckpointNote from "../core/CheckpointNote.ts"
import * as ClientAddress from "./http/ClientAddress.ts"
import type * as HttpApi from "./http/HttpApi.ts"
import * as Database from "./db/Database.ts"
import * as Main from "./Main.ts"
import * as Migrations from "./db/Migrations.ts"
import * as PgEventLog from "./eventlog/PgEventLog.ts"
import * as ProjectionRunner from "./eventlog/ProjectionRunner.ts"
import type { Projection } from "../core/Projection.ts"
import type { ProjectionSql } from "../core/ProjectionSql.ts"

const port = Options.integer("port").pipe(
  Options.filterMap(
    (n) => (Number.isInteger(n) && n >= 0 && n <= 65535 ? Option.some(n) : Option.none()),
    "--port must be a whole number from 0 to 65535"
  ),
  Options.withDefault(HubConfig.DEFAULT_PORT),
  Options.withDescription(`TCP port of the hub's HTTP server; 0 picks a free port (default ${HubConfig.DEFAULT_PORT}).`)
)

const host = Options.text("host").pipe(
  Options.withDefault(HubConfig.DEFAULT_HOST),
  Options.withDescription(
    `Interface to listen on (default ${HubConfig.DEFAULT_HOST}, this machine only; 0.0.0.0 for every interface).`
  )
)

const dataDir = Options.text("data-dir").pipe(
  Options.optional,
  Options.withDescription(
    "Directory for the hub's state, including its embedded Postgres (default $CONNECT_HOME/hub, CONNECT_HOME " +
      "defaulting to ~/.connect). Set DATABASE_URL to use an existing Postgres instead of the embedded one."
  )
)

const tlsCert = Options.file("tls-cert", { exists: "either" }).pipe(
  Options.optional,
  Options.withDescription("PEM certificate (chain) to serve HTTPS and WSS with; needs --tls-key. Without both, plain HTTP.")
)

const tlsKey = Options.file("tls-key", { exists: "either" }).pipe(
  Options.optional,
  Options.withDescription("PEM private key of --tls-cert.")
)

const trustProxy = Options.text("trust-proxy").pipe(
  Options.mapEffect((text) =>
    ClientAddress.parseCidrs(text).pipe(Effect.mapError((e) => ValidationError.invalidValue(HelpDoc.p(e.message))))
  ),
  Options.optional,
  Options.withDescription(
    "CIDR[,CIDR] of reverse proxies in front of the hub (e.g. 127.0.0.1/32): for connections from them the client " +
      "address is taken from X-Forwarded-For (walked from the right, past trusted hops), for the HTTP API and the agent " +
      "gateway alike. Default: none; every client is its socket's address."
  )
)

const maxStreams = Options.integer("max-streams").pipe(
  Options.filterMap(
    (n) => (n >= 1 && n <= 65_536 ? Option.some(n) : Option.none()),
    "--max-streams must be between 1 and 65536"
  ),
  Options.withDefault(HubConfig.DEFAULT_MAX_STREAMS),
  Options.withDescription(
    `Streams (tunnels) one agent connection may carry at once, opened by it or towards it; an Open beyond is refused ` +
      `with TooManyStreams and recorded (default ${HubConfig.DEFAULT_MAX_STREAMS}).`
  )
)

const publicUrl = Options.text("public-url").pipe(
  Options.filterMap((text) => {
    try {
      const url = new URL(text)
      return (url.protocol === "https:" || url.protocol === "http:") && url.search === "" && url.hash === ""
        ? Option.some(url.toString().replace(/\/+$/, ""))
        : Option.none()
    } catch {
      return Option.none()
    }
  }, "--public-url must be an http(s) URL without query, e.g. https://hub.example.com"),
  Options.optional,
  Options.withDescription(
    "The hub's URL as the public reaches it (e.g. https://hub.example.com behind a proxy): public links are printed as " +
      "<public-url>/l/TOKEN/. Default: the URL the hub listens on."
  )
)

const linkDomain = Options.text("link-domain").pipe(
  Options.filterMap(
    (text) => (/^(?=.{1,200}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/i.test(text) ? Option.some(text.toLowerCase()) : Option.none()),
    "--link-domain must be a domain name, e.g. links.example.com"
  ),
  Options.optional,
  Options.withDescription(
    "A domain whose subdomains point at this hub (a wildcard DNS record *.links.example.com): links are then also " +
      "served as https://TOKEN.links.example.com/, routed by the Host header."
  )
)

const denialWindow = Options.text("denial-window").pipe(
  Options.mapEffect((text) => Either.match(HubConfig.parseDenialWindow(text), {
    onLeft: (message) => Effect.fail(ValidationError.invalidValue(HelpDoc.p(message))),
    onRight: Effect.succeed
  })),
  Options.withDefault(HubConfig.DEFAULT_DENIAL_WINDOW_MS),
  Options.withDescription(
    "Refusals a stranger can repeat (bad tokens and keys, reach, share and link denials, console sign-ins) are recorded " +
      "once per source, reason and window, the rest of a window as one event with a count when it ends; also how long " +
      "an address past its refusal limit stays locked out, never less than 10s (default 10s; 1s to 1m, e.g. 30s)."
  )
)

const checkpointEvery = Options.integer("checkpoint-every").pipe(
  Options.filterMap((n) => (n >= 1 && n <= 1_000_000_000 ? Option.some(n) : Option.none()), "--checkpoint-every must be from 1 to 1000000000"),
  Options.withDefault(Checkpointer.DEFAULT_EVERY),
  Options.withDescription(`Sign a checkpoint of the log once this many events were appended since the last (default ${Checkpointer.DEFAULT_EVERY}).`)
)

const checkpointInterval = Options.text("checkpoint-interval").pipe(
  Options.mapEffect((text) => Either.match(Checkpointer.parseInterval(text), {
    onLeft: (message) => Effect.fail(ValidationError.invalidValue(HelpDoc.p(message))),
    onRight: Effect.succeed
  })),
  Options.withDefault(Checkpointer.DEFAULT_INTERVAL_MS),
  Options.withDescription("Sign a checkpoint once this long passed since the last, if anything was appended (default 5m; 30s, 5m, 1h).")
)

const checkpointCommand = Options.text("checkpoint-command").pipe(
  Options.optional,
  Options.withDescription(
    "Shell command run with each signed checkpoint note on stdin and its path in CONNECT_CHECKPOINT_FILE, to copy it " +
      "off this machine (e.g. 'aws s3 cp - s3://bucket/$(basename $CONNECT_CHECKPOINT_FILE)'). A failure is logged; the hub goes on."
  )
)

const checkpointOrigin = Options.text("checkpoint-origin").pipe(
  Options.filterMap((o) => (CheckpointNote.isOrigin(o) ? Option.some(o) : Option.none()), "--checkpoint-origin must be non-empty, with no space and no '+'"),
  Options.optional,
  Options.withDescription("First line of every checkpoint note and the name of a new signing key (default <this machine's name>/connect).")
)

/**
 * The event log and the database (SqlClient) of the hub whose data directory is `dataDir` (or of `DATABASE_URL`), for
 * offline commands such as verify and audit: the same database selection as `connect hub`, migrations applied, no HTTP
 * server.
 */
export const logLayer = (flags: { readonly dataDir: string | undefined }) =>
  Layer.unwrapEffect(
    Effect.map(HubConfig.make({ dataDir: flags.dataDir }), (config) =>
      // The catch-up lets a reader bring an async projection (audit's rollups) up to the head first.
      ProjectionRunner.layerCatchUp.pipe(
        Layer.provideMerge(PgEventLog.layer()),
        Layer.provideMerge(Migrations.layer),
        // Next to a running hub, read through its Postgres rather than starting (or stopping) one.
        Layer.provideMerge(Database.layer({ dataDir: config.dataDir, databaseUrl: config.databaseUrl, attach: true }))
      )
    )
  )

/**
 * The checkpoint signing key store of the hub whose data directory is `dataDir` (`$CONNECT_HOME/hub` by default), for
 * `connect audit pubkey`, `rotate-key` and `verify --checkpoint`.
 */
export const keyStoreLayer = (flags: { readonly dataDir: string | undefined }) =>
  Layer.unwrapEffect(Effect.map(HubConfig.make({ dataDir: flags.dataDir }), (config) => KeyFile.layer(config.dataDir)))

/**
 * `connect hub`, following `asyncProjections` (audit's rollups) while it runs and serving `auditRoutes` (audit's API
 * handlers), both passed in by bin/connect.ts.
 */
const hub = (
  asyncProjections: ReadonlyArray<Projection<ProjectionSql>>,
  auditRoutes: HttpApi.AuditRoutes | undefined
) => Command.make("hub", {
  port, host, dataDir, tlsCert, tlsKey, trustProxy, maxStreams, checkpointEvery, checkpointInterval, checkpointCommand, checkpointOrigin,
  publicUrl, linkDomain, denialWindow,
  ...OpsLogCli.options, ...MetricsOptions.options
}, (flags) =>
  Effect.gen(function*() {
    const tls = yield* HubConfig.readTls(Option.getOrUndefined(flags.tlsCert), Option.getOrUndefined(flags.tlsKey))
    const config = yield* HubConfig.make({
      port: flags.port,
      host: flags.host,
      dataDir: Option.getOrUndefined(flags.dataDir)
    })
    const warning = HubConfig.insecureWarning({ host: config.host, tls })
    if (warning !== undefined) yield* Console.error(warning)
    return yield* Layer.launch(
      Main.HubLive({
        ...config,
        tls,
        trustProxy: Option.getOrUndefined(flags.trustProxy),
        maxStreams: flags.maxStreams,
        publicUrl: Option.getOrUndefined(flags.publicUrl),
        linkDomain: Option.getOrUndefined(flags.linkDomain),
        denialWindowMs: flags.denialWindow,
        checkpoints: {
          every: flags.checkpointEvery,
          intervalMs: flags.checkpointInterval,
          command: Option.getOrUndefined(flags.checkpointCommand),
          origin: Option.getOrElse(flags.checkpointOrigin, Checkpointer.defaultOrigin)
        }
      }, {
        asyncProjections,
        ...(auditRoutes ? { auditRoutes } : {}),
        observe: true,
        ...(MetricsOptions.serveOptions(flags) ? { metrics: MetricsOptions.serveOptions(flags)! } : {})
      })
    )
  }).pipe(Effect.provide(OpsLog.layer({ format: flags.logFormat, level: flags.logLevel, service: "connect-hub" })))).pipe(
    Command.withDescription(
      "Start the hub: the HTTP API and the agent gateway (/v1/agent) on --host:--port, HTTPS/WSS with --tls-cert and " +
        "--tls-key, backed by Postgres — DATABASE_URL if set, else an embedded Postgres in --data-dir that starts and " +
        "stops with the hub. Stop it with Ctrl-C or SIGTERM."
    )
  )

/**
 * The `hub` subcommand with `verifyLog` and the admin commands (`workspace`, `apikey`, `agent`, `service`) under it.
 * `verifyLog` is audit's verify command on `logLayer`, built by bin/connect.ts: hub/ does not import audit/.
 */
export const command = <Name extends string, R, E, A>(
  verifyLog: Command.Command<Name, R, E, A>,
  asyncProjections: ReadonlyArray<Projection<ProjectionSql>> = [],
  auditRoutes?: HttpApi.AuditRoutes
) => hub(asyncProjections, auditRoutes).pipe(Command.withSubcommands([verifyLog, ...AdminCli.commands]))
