/**
 * The agent gateway: the relay with the Postgres policy, served over every WebSocket transport at `/v1/agent` on the
 * hub's own port, plus the spool replayer that brings what was recorded during an outage into the log. Every event it
 * appends names the hub (HubId.ts), and before it accepts anyone it closes in the log what this hub left open when it
 * last died (PgLeftOpen.ts) — once the hub holds its id's lock (taken with the spool, HubSpool.ts), so that no second
 * hub with the same id does (PgHubLock.ts).
 */
import type * as Http from "node:http"
import { SqlClient } from "@effect/sql"
import { Effect, Layer, Schedule } from "effect"
import { EventLog } from "../../core/EventLog.ts"
import { CLOSE_CODES } from "../../core/Transport.ts"
import { codec as msgpackCodec } from "../../transports/Msgpack.ts"
import * as WebSocket from "../../transports/WebSocket.ts"
import { codec as wsCodec } from "../../transports/Ws.ts"
import * as AgentAuth from "../commands/AgentAuth.ts"
import * as ClientAddress from "../http/ClientAddress.ts"
import { DEFAULT_DENIAL_WINDOW_MS, HubConfig } from "../HubConfig.ts"
import * as HubId from "../eventlog/HubId.ts"
import { HubRawRoutes, HubUpgrades } from "../http/HubServer.ts"
import * as LinkProxy from "../http/LinkProxy.ts"
import { HubMetrics } from "../metrics/Metrics.ts"
import * as PgLeftOpen from "./PgLeftOpen.ts"
import * as PgRelayPolicy from "./PgRelayPolicy.ts"
import * as PgRevocations from "./PgRevocations.ts"
import * as Relay from "./Relay.ts"
import * as Spool from "../eventlog/Spool.ts"
import { HubSpool } from "./HubSpool.ts"

/** Path of the agent WebSocket endpoint. */
export const PATH = "/v1/agent"

/** Options of the gateway. */
export interface GatewayOptions {
  /** Relay options (heartbeat, hello timeout, window). */
  readonly relay?: Relay.RelayOptions
}

/** Serves the relay at `/v1/agent` over every WebSocket transport, through `HubUpgrades`. */
export const layer = (options: GatewayOptions = {}): Layer.Layer<
  never,
  never,
  HubConfig | HubUpgrades | HubRawRoutes | EventLog | SqlClient.SqlClient | AgentAuth.TokenSettings | HubSpool
> =>
  Layer.scopedDiscard(
    Effect.gen(function*() {
      const config = yield* HubConfig
      const hubId = yield* Effect.orDie(HubId.load(config.dataDir))
      const log = yield* EventLog
      yield* Effect.provideService(serve(hubId, options), EventLog, HubId.stamp(log, hubId))
    })
  )

/** The gateway of hub `hubId`, over the context's (stamped) event log. */
const serve = (hubId: string, options: GatewayOptions) =>
  Effect.gen(function*() {
    const config = yield* HubConfig
    const upgrades = yield* HubUpgrades
    // The hub's one spool: the HTTP API records its refusals through it too; replayed here. It comes with the hub id's
    // lock (HubSpool.ts, PgHubLock.ts): no other hub with this id runs, so what is replayed and closed in the log
    // under this id is this hub's.
    const spool = yield* HubSpool
    yield* recoverAtStart(spool, hubId)
    yield* Spool.runReplayer(spool)
    const policy = yield* PgRelayPolicy.make({ spool, window: config.denialWindowMs ?? DEFAULT_DENIAL_WINDOW_MS })
    const relay = yield* Relay.make(policy, {
      ...(config.maxStreams === undefined ? {} : { maxStreams: config.maxStreams }),
      ...options.relay
    })
    // With --metrics-port, the relay's load and the spool's depth are read at each scrape.
    const metrics = yield* Effect.serviceOption(HubMetrics)
    if (metrics._tag === "Some") Object.assign(metrics.value.sources, { relay: relay.stats, spoolPending: spool.pending })
    const trusted = ClientAddress.make(config.trustProxy)
    const accepted = yield* WebSocket.upgrades({
      codecs: [wsCodec, msgpackCodec],
      // Behind a trusted proxy the agent's address is the one X-Forwarded-For names, with the proxy's port as the
      // connection's own (ip:port, as for a direct connection).
      ...(config.trustProxy?.length ? { remoteAddress: (req: Http.IncomingMessage) => agentAddress(trusted, req) } : {})
    }, relay.accept)
    yield* closeExpiredShares((shareId) => void relay.closeShare(shareId, PgRelayPolicy.SHARE_EXPIRED))
    yield* upgrades.register(PATH, accepted.handle)
    // Public links reach services through this relay, recording through the same spool.
    const links = yield* LinkProxy.serve(relay, spool)
    // Revocations made anywhere (another hub process, the CLI): a revoked agent's live connection ends, the tunnels of
    // a revoked share close (TunnelClosed share_revoked; later opens are refused by the policy), a revoked link is
    // dropped by the proxy.
    yield* PgRevocations.follow({
      agent: (agentId) => void relay.disconnect(agentId, CLOSE_CODES.Unauthorized, "token revoked"),
      share: (shareId) => void relay.closeShare(shareId, PgRelayPolicy.SHARE_REVOKED),
      link: links.revoked
    })
  })

/**
 * What this hub spooled before it last stopped goes into the log first (its closes carry the real byte counts), then
 * the tunnels and connections it left open without a record are closed in the log.
 */
const recoverAtStart = (spool: Spool.Spool, hubId: string) =>
  Effect.gen(function*() {
    if (spool.pending() > 0) {
      yield* spool.replay.pipe(Effect.catchAll((e) => Effect.logError(`gateway: the spool did not replay at start: ${e.message}`)))
    }
    const closed = yield* PgLeftOpen.closeLeftOpen(hubId, spool.pendingStreams())
    if (closed.tunnels + closed.agents > 0) {
      yield* Effect.logWarning(
        `gateway: closed in the log ${closed.tunnels} tunnel(s) and ${closed.agents} agent connection(s) that this hub ` +
          `(${hubId}) left open when it last stopped`
      )
    }
  }).pipe(Effect.catchAll((e) => Effect.logError("gateway: could not close what this hub left open", e)))

/**
 * Every 2 s, ends the tunnels opened through a share that expired since the last look (from this hub's start), recorded
 * `share_expired`: the policy refuses opens after the expiry, but a tunnel opened a moment before it lived on (a
 * reviewer's share expired at 14:14:19 and its tunnel still carried traffic a minute later). The clock is the one the
 * policy checks expiry with.
 */
const closeExpiredShares = (close: (shareId: string) => void) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const settings = yield* AgentAuth.TokenSettings
    let since = settings.now()
    const sweep = Effect.gen(function*() {
      const until = settings.now()
      const rows = yield* sql.unsafe<{ id: string }>(
        `select id from shares where expires_at > $1 and expires_at <= $2 and revoked_at is null`,
        [since, until]
      )
      since = until
      for (const r of rows) close(r.id)
    }).pipe(Effect.catchAll((e) => Effect.logWarning("gateway: cannot look for expired shares", e)))
    yield* sweep.pipe(Effect.repeat(Schedule.spaced("2 seconds")), Effect.forkScoped)
  })

const agentAddress = (trusted: ClientAddress.TrustedProxies, req: Http.IncomingMessage): string =>
  ClientAddress.withPort(
    ClientAddress.resolve(trusted, req.socket.remoteAddress, req.headers["x-forwarded-for"]),
    req.socket.remotePort
  )
