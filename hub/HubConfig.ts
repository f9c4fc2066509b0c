/**
 * The hub's configuration: listen address, data directory and database, from flags and the environment
 * (`CONNECT_HOME`, `DATABASE_URL`).
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Tls from "node:tls"
import * as Path from "node:path"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { messageOf } from "../core/ErrorMessage.ts"
import type { CheckpointSettings } from "./checkpoints/Checkpointer.ts"

/** Everything `connect hub` needs to start. */
export interface HubConfigShape {
  /** Interface the HTTP server binds (default 127.0.0.1). */
  readonly host: string
  /** TCP port of the HTTP server (default 3001; 0 picks a free one). */
  readonly port: number
  /** Directory of the hub's own state, including the embedded Postgres (default `$CONNECT_HOME/hub`). */
  readonly dataDir: string
  /** External Postgres (`DATABASE_URL`); when absent the hub runs an embedded one in `dataDir`. */
  readonly databaseUrl: string | undefined
  /** When set, the hub serves HTTPS and WSS itself with this certificate and key (PEM). */
  readonly tls?: TlsFiles | undefined
  /** Reverse proxies (CIDR blocks) whose `X-Forwarded-For` names the client (`--trust-proxy`; default none). */
  readonly trustProxy?: ReadonlyArray<string> | undefined
  /** Limits of the HTTP port and its `/v1` API (default `DEFAULT_LIMITS`). */
  readonly limits?: HttpLimits | undefined
  /** Streams one agent connection may carry at once (`--max-streams`; default `DEFAULT_MAX_STREAMS`). */
  readonly maxStreams?: number | undefined
  /** Signed checkpoints of the log (`--checkpoint-*`); none when absent. */
  readonly checkpoints?: CheckpointSettings | undefined
  /** The hub's URL as the public sees it (`--public-url`), for link URLs; default its listen URL. */
  readonly publicUrl?: string | undefined
  /** Domain whose subdomains are links (`--link-domain links.example.com`: `https://TOKEN.links.example.com/`). */
  readonly linkDomain?: string | undefined
  /**
   * Window, in ms, over which repeated refusals of one source and reason are recorded as one event with a count, and
   * the lock-out of an address past its refusal limit (`--denial-window`; default `DEFAULT_DENIAL_WINDOW_MS`).
   */
  readonly denialWindowMs?: number | undefined
}

/**
 * 10 s: a flood of refusals costs one event per source, reason and 10 s, while a single refusal is still recorded at
 * once (only the rest of its window waits for the window's end).
 */
export const DEFAULT_DENIAL_WINDOW_MS = 10_000

/**
 * `--denial-window` (1s to 1m, e.g. 10s, 30s), in ms, or the message naming what it expects. At most a minute: a
 * window's count lives in memory until the window ends, so a crash loses up to a window of counted refusals (the first
 * of each is appended at once).
 */
export const parseDenialWindow = (text: string): Either.Either<number, string> => {
  const m = /^(\d{1,7})(ms|s|m|h)$/.exec(text.trim())
  const ms = m ? Number(m[1]) * { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }[m[2] as "ms" | "s" | "m" | "h"] : NaN
  return ms >= 1_000 && ms <= 60_000
    ? Either.right(ms)
    : Either.left(`--denial-window must be a duration from 1s to 1m, such as 10s or 30s (got ${JSON.stringify(text.slice(0, 40))})`)
}

/** The URL public links are printed under: `--public-url`, else the listen URL (`port` the bound one). */
export const publicUrlOf = (config: HubConfigShape, port: number = config.port): string =>
  (config.publicUrl ?? `${config.tls ? "https" : "http"}://${config.host.includes(":") ? `[${config.host}]` : config.host}:${port}`)
    .replace(/\/+$/, "")

/**
 * Streams per agent connection: a pool of a few hundred database connections through one reach stays well inside,
 * while the connection window keeps even 1,024 busy streams from holding more than 16 MiB of the hub's memory.
 */
export const DEFAULT_MAX_STREAMS = 1_024

/**
 * Limits of the hub's HTTP port and its `/v1` API. The headers timeout and the connection cap hold for the whole port
 * (they act before a request has a path); the request deadline and the body limit are the API's, so a later route
 * (public links) sets its own.
 */
export interface HttpLimits {
  /** Time a client has to send a request's headers before its connection is cut. */
  readonly headersTimeout: Duration.DurationInput
  /** Time a request has, from its headers, to arrive whole (not a public link's: see `linkIdleTimeout`). */
  readonly requestTimeout: Duration.DurationInput
  /** Connections one client address may hold open at once; further ones are closed on accept. */
  readonly maxConnectionsPerAddress: number
  /** Largest API request body (bytes); larger is 413. */
  readonly maxBodyBytes: number
  /**
   * A public-link exchange with no byte either way for this long is cut (default 60 s). Links have no whole-request
   * deadline: an upload of any size lasts as long as its bytes keep coming.
   */
  readonly linkIdleTimeout?: Duration.DurationInput | undefined
}

/**
 * 10 s cuts a slowloris client while an honest one, which sends its headers in one packet and an API body of a few
 * hundred bytes, never comes near it. 256 connections is far above what one agent or admin opens (one WebSocket plus
 * a few API calls) yet keeps one address from holding the port's sockets. API bodies are a few hundred bytes; 64 KiB
 * leaves room for any label or future field.
 */
export const DEFAULT_LIMITS: HttpLimits = {
  headersTimeout: "10 seconds",
  requestTimeout: "10 seconds",
  maxConnectionsPerAddress: 256,
  maxBodyBytes: 64 * 1024
}

/** True for a host that only this machine can reach (127.0.0.0/8, ::1, localhost). */
export const isLoopbackHost = (host: string): boolean => {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase()
  return h === "localhost" || h === "::1" || /^127\.\d+\.\d+\.\d+$/.test(h)
}

/** The warning for a hub that listens beyond loopback without TLS, or undefined when there is nothing to warn about. */
export const insecureWarning = (config: Pick<HubConfigShape, "host" | "tls">): string | undefined =>
  config.tls !== undefined || isLoopbackHost(config.host)
    ? undefined
    : `connect: warning: listening on ${config.host} without TLS — agent tokens and API keys cross the network in ` +
      "the clear. Use --tls-cert/--tls-key, or put a TLS-terminating proxy in front (with --trust-proxy)."

/** A TLS certificate chain and private key, read from the files the operator named. */
export interface TlsFiles {
  readonly certPath: string
  readonly cert: Buffer
  readonly key: Buffer
}

/** `--tls-cert` and `--tls-key` given alone, or a file that cannot be read: refused before anything starts. */
export class TlsConfigError extends Schema.TaggedError<TlsConfigError>()("TlsConfigError", {
  message: Schema.String
}) {}

/** Reads `--tls-cert`/`--tls-key` (both or neither); the files are read now so a bad path fails at startup. */
export const readTls = (certPath: string | undefined, keyPath: string | undefined) =>
  Effect.gen(function*() {
    if (certPath === undefined && keyPath === undefined) return undefined
    if (certPath === undefined || keyPath === undefined) {
      return yield* new TlsConfigError({ message: "--tls-cert and --tls-key go together: give both, or neither for plain HTTP" })
    }
    const read = (path: string, what: string) =>
      Effect.try({
        try: () => Fs.readFileSync(path),
        catch: (cause) =>
          new TlsConfigError({ message: `cannot read the TLS ${what} ${path}: ${(cause as NodeJS.ErrnoException).code ?? String(cause)}` })
      })
    const tls: TlsFiles = { certPath: Path.resolve(certPath), cert: yield* read(certPath, "certificate"), key: yield* read(keyPath, "key") }
    // Checked here so a mismatched or malformed pair is one clear line at startup, not a failure on the first client.
    yield* Effect.try({
      try: () => Tls.createSecureContext({ cert: tls.cert, key: tls.key }),
      catch: (cause) => new TlsConfigError({ message: `the TLS certificate and key are not a usable pair: ${messageOf(cause)}` })
    })
    return tls
  })

/** The running hub's configuration. */
export class HubConfig extends Context.Tag("connect/hub/HubConfig")<HubConfig, HubConfigShape>() {}

/** Default HTTP port of the hub. */
export const DEFAULT_PORT = 3001
/** Default interface of the hub: loopback, so nothing is exposed until asked for. */
export const DEFAULT_HOST = "127.0.0.1"

/** `CONNECT_HOME`, defaulting to `~/.connect`. */
export const connectHome: Config.Config<string> = Config.string("CONNECT_HOME").pipe(
  Config.withDefault(""),
  Config.map((home) => Path.resolve(home.trim() || Path.join(Os.homedir(), ".connect")))
)

/** `DATABASE_URL`, absent when unset or blank. */
export const databaseUrl: Config.Config<Option.Option<string>> = Config.string("DATABASE_URL").pipe(
  Config.option,
  Config.map(Option.filter((url) => url.trim() !== ""))
)

/** The configuration from flags (absent flags take their defaults) and the environment. */
export const make = (flags: {
  readonly host?: string | undefined
  readonly port?: number | undefined
  readonly dataDir?: string | undefined
}): Effect.Effect<HubConfigShape, ConfigError.ConfigError> =>
  Effect.gen(function*() {
    const home = yield* connectHome
    const url = yield* databaseUrl
    return {
      host: flags.host ?? DEFAULT_HOST,
      port: flags.port ?? DEFAULT_PORT,
      dataDir: Path.resolve(flags.dataDir ?? Path.join(home, "hub")),
      databaseUrl: Option.getOrUndefined(url)
    }
  })
