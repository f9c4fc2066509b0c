/**
 * The hub's Prometheus metrics (`connect hub --metrics-port P`): what an operator alerts on — events appended (their
 * rate is appends/s), append latency and appends in flight, the writer's batch sizes and queue, the spool's depth, connected agents and open tunnels,
 * bytes relayed, denials and authentication failures by reason. Counters of what happened are taken from the
 * events the hub appends (one place, exactly what the log says); gauges are read from the relay and the spool at
 * each scrape. Off unless asked; served on loopback unless `--metrics-host` says otherwise.
 */
import * as Http from "node:http"
import { ServeError } from "@effect/platform/HttpServerError"
import * as Console from "effect/Console"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Client from "prom-client"
import type { Event } from "../../core/Events.ts"

/** What the gauges read at each scrape; the gateway fills it in once its relay and spool exist. */
export interface Sources {
  relay?: () => { readonly connections: number; readonly agents: number; readonly streams: number; readonly bufferedBytes: number }
  spoolPending?: () => number
}

/** The hub's metrics. */
export interface HubMetricsShape {
  readonly registry: Client.Registry
  /** Counts the events of one successful append and its latency. */
  readonly appended: (events: ReadonlyArray<Event>, seconds: number) => void
  /** An append started (+1) or ended (-1), whatever its outcome. */
  readonly inFlight: (delta: 1 | -1) => void
  /** An append failed (conflict or unavailable). */
  readonly failed: (reason: string) => void
  /** The writer took a batch of `requests` append calls, leaving `queued` waiting (PgWriter's `onBatch`). */
  readonly batch: (requests: number, queued: number) => void
  /** Where the gauges read the relay and the spool. */
  readonly sources: Sources
}

/** The hub's metrics, present only when `--metrics-port` was given. */
export class HubMetrics extends Context.Tag("connect/hub/HubMetrics")<HubMetrics, HubMetricsShape>() {}

/** The reason a denial or failure event carries, or undefined when the event is neither. */
const denialOf = (event: Event): { readonly kind: "denial" | "auth"; readonly reason: string; readonly count: number } | undefined => {
  const fields = event as unknown as { readonly reason?: unknown; readonly outcome?: unknown; readonly count?: unknown }
  const count = typeof fields.count === "number" ? fields.count : 1
  const reason = typeof fields.reason === "string" ? fields.reason : "unknown"
  // By name, so that a refusal type added later (a console sign-in, ...) is counted without a change here.
  const type: string = event._tag
  if (type.endsWith("AuthFailed") || type.endsWith("SignInFailed")) return { kind: "auth", reason, count }
  if (type.endsWith("Denied")) return { kind: "denial", reason, count }
  // Accesses through shares and links carry their refusals as an outcome.
  if (type.endsWith("Accessed") && fields.outcome !== undefined && fields.outcome !== "allowed" && fields.outcome !== "ok") {
    return { kind: "denial", reason, count }
  }
  return undefined
}

/** Makes the metrics on a registry of their own (nothing global: tests may run several hubs in one process). */
export const make = (): HubMetricsShape => {
  const registry = new Client.Registry()
  const sources: Sources = {}
  const events = new Client.Counter({
    name: "connect_events_appended_total",
    help: "Events appended to the event log by this hub, by type (rate() is appends per second).",
    labelNames: ["type"],
    registers: [registry]
  })
  const appends = new Client.Histogram({
    name: "connect_eventlog_append_events",
    help: "Events per append call (one call may hold several events of one stream).",
    buckets: [1, 2, 4, 8, 16, 64, 256],
    registers: [registry]
  })
  const latency = new Client.Histogram({
    name: "connect_eventlog_append_seconds",
    help: "Time from an append call to its commit, waiting in the writer's queue included.",
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [registry]
  })
  const inFlight = new Client.Gauge({
    name: "connect_eventlog_appends_in_flight",
    help: "Append calls waiting in the writer's queue or in its current batch.",
    registers: [registry]
  })
  // The group commit at work: one append call per batch when idle, hundreds under load (PgWriter's maxBatch is 512).
  const batches = new Client.Histogram({
    name: "connect_eventlog_batch_requests",
    help: "Append calls committed per writer transaction (group commit); _count is the rate of commits.",
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
    registers: [registry]
  })
  const writerQueued = new Client.Gauge({
    name: "connect_eventlog_writer_queued",
    help: "Append calls left waiting in the writer's queue when it took its last batch (full at 10,000: appends refused).",
    registers: [registry]
  })
  const failures = new Client.Counter({
    name: "connect_eventlog_append_failures_total",
    help: "Append calls that failed, by reason (conflict, unavailable, ...).",
    labelNames: ["reason"],
    registers: [registry]
  })
  const denials = new Client.Counter({
    name: "connect_denials_total",
    help: "Refused reaches, opens, share and link accesses, by event type and reason (coalesced refusals counted each).",
    labelNames: ["type", "reason"],
    registers: [registry]
  })
  const authFailures = new Client.Counter({
    name: "connect_auth_failures_total",
    help: "Refused agent tokens and API keys, by event type and reason (coalesced refusals counted each).",
    labelNames: ["type", "reason"],
    registers: [registry]
  })
  const bytes = new Client.Counter({
    name: "connect_relayed_bytes_total",
    help: "Bytes relayed by tunnels that closed, by direction (up: to the service, down: back).",
    labelNames: ["direction"],
    registers: [registry]
  })
  const gauge = (name: string, help: string, read: () => number | undefined) =>
    new Client.Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        const value = read()
        if (value !== undefined) this.set(value)
      }
    })
  gauge("connect_agents_connected", "Agents with an authenticated connection to this hub.", () => sources.relay?.().agents)
  gauge("connect_connections_open", "Open agent connections, authenticated or not.", () => sources.relay?.().connections)
  gauge("connect_tunnels_open", "Tunnels (streams) pending or open through this hub.", () => sources.relay?.().streams)
  gauge("connect_relay_buffered_bytes", "Bytes queued in the hub's relay.", () => sources.relay?.().bufferedBytes)
  gauge("connect_spool_pending", "Events spooled to disk while the log was unreachable, not yet appended.", () => sources.spoolPending?.())
  // Every series present from the first scrape, at 0, so a rate over the first minutes is right.
  for (const direction of ["up", "down"]) bytes.inc({ direction }, 0)

  return {
    registry,
    sources,
    appended: (list, seconds) => {
      appends.observe(list.length)
      latency.observe(seconds)
      for (const event of list) {
        events.inc({ type: event._tag })
        const denial = denialOf(event)
        if (denial) (denial.kind === "auth" ? authFailures : denials).inc({ type: event._tag, reason: denial.reason }, denial.count)
        if (event._tag === "TunnelClosed") {
          bytes.inc({ direction: "up" }, event.bytesUp)
          bytes.inc({ direction: "down" }, event.bytesDown)
        }
      }
    },
    inFlight: (delta) => inFlight.inc(delta),
    failed: (reason) => failures.inc({ reason }),
    batch: (requests, queued) => {
      batches.observe(requests)
      writerQueued.set(queued)
    }
  }
}

/** Where the metrics are served. */
export interface ServeOptions {
  readonly port: number
  readonly host: string
}

/**
 * Serves `metrics` in Prometheus text format on `GET /metrics` at host:port for the scope, printing where; anything
 * else is a 404. Fails when the port cannot be bound.
 */
export const serve = (metrics: HubMetricsShape, options: ServeOptions) =>
  Effect.acquireRelease(
    Effect.async<Http.Server, ServeError>((resume) => {
      const server = Http.createServer((req, res) => {
        if (req.method !== "GET" || (req.url ?? "").split("?")[0] !== "/metrics") {
          res.writeHead(404, { "content-type": "text/plain" }).end("not found: GET /metrics\n")
          return
        }
        metrics.registry.metrics().then(
          (text) => res.writeHead(200, { "content-type": metrics.registry.contentType }).end(text),
          (error: unknown) => res.writeHead(500, { "content-type": "text/plain" }).end(`${String(error)}\n`)
        )
      })
      server.once("error", (error) => resume(Effect.fail(new ServeError({ cause: error }))))
      server.listen(options.port, options.host, () => resume(Effect.succeed(server)))
    }),
    (server) => Effect.async<void>((resume) => {
      server.closeAllConnections()
      server.close(() => resume(Effect.void))
    })
  ).pipe(
    Effect.tap((server) => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : options.port
      const host = options.host.includes(":") ? `[${options.host}]` : options.host
      // A start-up line like "listening on": printed whatever --log-level says.
      return Console.log(`connect hub metrics on http://${host}:${port}/metrics`)
    })
  )

/** The metrics for the hub and their HTTP endpoint, for the scope of the hub. */
export const layer = (options: ServeOptions): Layer.Layer<HubMetrics, ServeError> =>
  Layer.scoped(
    HubMetrics,
    Effect.gen(function*() {
      const metrics = make()
      yield* serve(metrics, options)
      return metrics
    })
  )
