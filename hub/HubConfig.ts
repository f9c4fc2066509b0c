/**
 * The hub's configuration: listen address, data directory and database, from flags and the environment
 * (`CONNECT_HOME`, `DATABASE_URL`).
 */
import * as Os from "node:os"
import * as Path from "node:path"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"

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
}

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
