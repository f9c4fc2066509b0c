/**
 * A link already in the hub's cache while the event log stalls (another session holds the append lock; no lookup is
 * needed, so its 5 s deadline does not apply): the hub fails closed (503) within a few seconds, once an append of the
 * records of what it served has waited LinkGroups.STALL_MS, instead of serving on with those records in memory only
 * (found in review: it served for 40 s, 1,100-1,300 requests, until the first append gave up). Once the lock is free,
 * every request served is on the log.
 */
import * as Http from "node:http"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import Pg from "pg"
import * as PgEventLog from "../../../hub/eventlog/PgEventLog.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"
import { createLink, send, world } from "../../support/LinkWorld.ts"



describe("a cached link while the log stalls", () => {
  it.scopedLive("is answered 503 within 5 s of the log stalling, and every request it served reaches the log", () =>
    Effect.gen(function*() {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      const { hub, apiKey } = yield* world({ databaseUrl: url })
      const link = yield* createLink(hub, apiKey)
      const pool = new Http.Agent({ keepAlive: true, maxSockets: 1 })
      expect((yield* send(hub.port, `${link.path}/warm`, { agent: pool })).status).toBe(200)
      const holder = new Pg.Client({ connectionString: url })
      yield* Effect.acquireRelease(Effect.promise(() => holder.connect()), () => Effect.promise(() => holder.end()))
      yield* Effect.promise(() => holder.query(`select pg_advisory_lock($1)`, [PgEventLog.APPEND_LOCK_KEY]))
      const stalledAt = Date.now()
      const statuses: Array<number> = []
      let first503 = -1
      while (Date.now() - stalledAt < 20_000) {
        const answer = yield* send(hub.port, `${link.path}/r${statuses.length}`, { agent: pool })
        statuses.push(answer.status)
        if (answer.status === 503) {
          first503 = Date.now() - stalledAt
          break
        }
        yield* Effect.sleep("20 millis")
      }
      yield* Effect.promise(() => holder.query(`select pg_advisory_unlock($1)`, [PgEventLog.APPEND_LOCK_KEY]))
      pool.destroy()
      const served = statuses.filter((s) => s === 200).length
      // Once the lock is free, every served request reaches the log (nothing lost without a crash).
      const unlockedAt = Date.now()
      const count = () => Effect.map(hub.events, (events) => events.filter((e) => e.event._tag === "LinkAccessed" && (e.event as { outcome?: string }).outcome === "allowed").length)
      let recorded = yield* count()
      while (recorded < served + 1 && Date.now() - unlockedAt < 90_000) {
        yield* Effect.sleep("1 second")
        recorded = yield* count()
      }
      expect(first503).toBeGreaterThanOrEqual(0)
      expect(first503).toBeLessThan(5_000)
      expect(recorded).toBe(served + 1)
    }), 240_000)
})
