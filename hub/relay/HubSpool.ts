/**
 * The hub's one spool of facts (hub/eventlog/Spool.ts, in `<data dir>/spool`) as a service: the relay, the link proxy
 * and the shares API record through it what already happened while the log is unavailable, and the gateway replays
 * it. One per hub process: two spools on one file would each replay, and count, the other's lines.
 */
import * as Path from "node:path"
import { Context, Effect, Layer } from "effect"
import * as Spool from "../eventlog/Spool.ts"
import { HubConfig } from "../HubConfig.ts"

/** The hub's spool. */
export class HubSpool extends Context.Tag("connect/hub/HubSpool")<HubSpool, Spool.Spool>() {}

/** Opens the spool in the configured data directory. */
export const layer: Layer.Layer<HubSpool, never, HubConfig> = Layer.effect(
  HubSpool,
  Effect.flatMap(HubConfig, (config) => Spool.make(Path.join(config.dataDir, "spool")))
)
