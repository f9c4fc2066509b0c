/**
 * The agent gateway: the relay with the Postgres policy, served over every WebSocket transport at `/v1/agent` on the
 * hub's own port, plus the spool replayer that brings `TunnelClosed` events recorded during an outage into the log.
 */
import { EventEmitter } from "node:events"
import type * as Http from "node:http"
import * as Path from "node:path"
import { SqlClient } from "@effect/sql"
import { Effect, Layer } from "effect"
import { EventLog } from "../core/EventLog.ts"
import * as AgentAuth from "./AgentAuth.ts"
import { HubConfig } from "./HubConfig.ts"
import * as PgRelayPolicy from "./PgRelayPolicy.ts"
import * as Relay from "./Relay.ts"
import * as Spool from "./Spool.ts"
// Main imports this module for RoutesLive; these are type-level and value-level uses resolved lazily at build time.
import { HubHttpServer, HubUpgrades } from "./Main.ts"

/** Path of the agent WebSocket endpoint. */
export const PATH = "/v1/agent"

/** Options of the gateway. */
export interface GatewayOptions {
  /** Relay options (heartbeat, hello timeout, window). */
  readonly relay?: Relay.RelayOptions
}

/**
 * Serves the relay at `/v1/agent` through `HubUpgrades`. `Relay.serve` attaches to an `http.Server` by listening to
 * its "upgrade" event, which the hub's server must not have; so it is given a stand-in emitter that receives exactly
 * the upgrades `HubUpgrades` routes to this path, and reports the hub server's address.
 */
export const layer = (options: GatewayOptions = {}): Layer.Layer<
  never,
  never,
  HubConfig | HubHttpServer | HubUpgrades | EventLog | SqlClient.SqlClient | AgentAuth.TokenSettings
> =>
  Layer.scopedDiscard(
    Effect.gen(function*() {
      const config = yield* HubConfig
      const server = yield* HubHttpServer
      const upgrades = yield* HubUpgrades
      const spool = yield* Spool.make(Path.join(config.dataDir, "spool"))
      yield* Spool.runReplayer(spool)
      yield* PgRelayPolicy.sweepStaleConnections.pipe(
        Effect.catchAll((e) => Effect.logWarning("gateway: could not close stale connections in the read model", e))
      )
      const policy = yield* PgRelayPolicy.make({ spool })
      const relay = yield* Relay.make(policy, options.relay)
      const standIn = Object.assign(new EventEmitter(), { address: () => server.address() }) as unknown as Http.Server
      yield* Relay.serve(relay, { server: standIn }).pipe(Effect.orDie)
      yield* upgrades.register(PATH, (request, socket, head) => {
        standIn.emit("upgrade", request, socket, head)
      })
    })
  )
