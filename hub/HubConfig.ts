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
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"

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
}

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
      catch: (cause) => new TlsConfigError({ message: `the TLS certificate and key are not a usable pair: ${(cause as Error).message}` })
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
