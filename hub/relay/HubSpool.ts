/**
 * The hub's one spool of facts (hub/eventlog/Spool.ts, in `<data dir>/spool`) as a service: the relay, the link proxy
 * and the shares API record through it what already happened while the log is unavailable, and the gateway replays
 * it. One per hub process: two spools on one file would each replay, and count, the other's lines. It is opened under
 * the hub id's lock (PgHubLock.ts), held for as long as the spool is: opening cuts a torn last line and removes a
 * stale offset, which in a second hub started on the running hub's data directory would cut a line the running hub
 * is still writing.
 */
import * as Path from "node:path"
import type { SqlClient } from "@effect/sql"
import { Context, Effect, Layer } from "effect"
import * as HubId from "../eventlog/HubId.ts"
import * as Spool from "../eventlog/Spool.ts"
import { HubConfig } from "../HubConfig.ts"
import * as PgHubLock from "./PgHubLock.ts"

/** The hub's spool. */
export class HubSpool extends Context.Tag("connect/hub/HubSpool")<HubSpool, Spool.Spool>() {}

/** Takes the hub id's lock (a hub holding it already: the start fails), then opens the spool in the data directory. */
export const layer: Layer.Layer<HubSpool, never, HubConfig | SqlClient.SqlClient> = Layer.scoped(
  HubSpool,
  Effect.gen(function*() {
    const config = yield* HubConfig
    const hubId = yield* Effect.orDie(HubId.load(config.dataDir))
    yield* Effect.orDie(PgHubLock.hold(hubId))
    return yield* Spool.make(Path.join(config.dataDir, "spool"))
  })
)
