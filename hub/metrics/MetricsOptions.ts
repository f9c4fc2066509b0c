/**
 * The `--metrics-port` and `--metrics-host` options of `connect hub` (see Metrics.ts).
 */
import * as Options from "@effect/cli/Options"
import * as Option from "effect/Option"
import type { ServeOptions } from "./Metrics.ts"

/** The loopback address metrics are served on unless `--metrics-host` says otherwise. */
export const DEFAULT_HOST = "127.0.0.1"

/** `--metrics-port P`: serve Prometheus metrics on P (0 picks a free port); off when absent. */
export const metricsPort = Options.integer("metrics-port").pipe(
  Options.filterMap(
    (n) => (Number.isInteger(n) && n >= 0 && n <= 65535 ? Option.some(n) : Option.none()),
    "--metrics-port must be a whole number from 0 to 65535"
  ),
  Options.optional,
  Options.withDescription(
    "Serve Prometheus metrics (GET /metrics) on this port: appends, append latency, spool depth, agents, tunnels, " +
      "bytes relayed, denials and auth failures by reason. Default: no metrics."
  )
)

/** `--metrics-host H` (default loopback). */
export const metricsHost = Options.text("metrics-host").pipe(
  Options.withDefault(DEFAULT_HOST),
  Options.withDescription(`Interface of --metrics-port (default ${DEFAULT_HOST}, this machine only).`)
)

/** Both, as the options of a command. */
export const options = { metricsPort, metricsHost }

/** Where to serve metrics, or undefined when --metrics-port is absent. */
export const serveOptions = (flags: { readonly metricsPort: Option.Option<number>; readonly metricsHost: string }): ServeOptions | undefined =>
  Option.match(flags.metricsPort, { onNone: () => undefined, onSome: (port) => ({ port, host: flags.metricsHost }) })
