/**
 * A share refusal is a fact, like a tunnel's close: when the log becomes unreachable while its record is on the way, it
 * must wait in the hub's spool and reach the log exactly once when the log is back, never be dropped with an error
 * line. The refusal's append is caught in flight: another session holds the append lock, then the database becomes
 * unreachable (a cut proxy) and the waiting backend is ended, so that nothing of that first attempt can commit.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import Pg from "pg"
import * as PgEventLog from "../../../hub/eventlog/PgEventLog.ts"
import * as Hub from "../../support/Hub.ts"
import * as TcpProxy from "../../support/TcpProxy.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"

/** How long the database stays unreachable: well past the hub's retries before it spools (3 tries, 200 ms apart). */
const OUTAGE_MS = 5_000

const query = (client: Pg.Client, text: string, params: ReadonlyArray<unknown> = []) =>
  Effect.promise(() => client.query(text, params as Array<unknown>))

describe("share refusals while the log is unreachable", () => {
  it.scopedLive("a refused join whose record cannot be appended is on the log exactly once after the outage", () =>
    Effect.gen(function*() {
      const direct = yield* TestDatabase.makeTestDatabaseUrl
      const url = new URL(direct)
      const proxy = yield* TcpProxy.start(url.hostname, Number(url.port || 5432))
      url.hostname = "127.0.0.1"
      url.port = String(proxy.port)
      const hub = yield* Hub.start({ databaseUrl: url.toString() })
      const { workspaceId, apiKey } = yield* hub.workspace("stranger")
      const joiner = (yield* hub.http("POST", "/v1/agents", apiKey, { label: "joiner" })).body

      // A session of its own, straight to Postgres (not through the proxy), holds the append lock.
      const holder = new Pg.Client({ connectionString: direct })
      yield* Effect.acquireRelease(Effect.promise(() => holder.connect()), () => Effect.promise(() => holder.end()))
      yield* query(holder, `select pg_advisory_lock($1)`, [PgEventLog.APPEND_LOCK_KEY])

      const answer = yield* hub.http("POST", "/v1/shares/join", joiner.token, { code: `sh_${"0".repeat(32)}` })
      expect(answer.status).toBe(404)
      // The refusal's append is waiting for the lock.
      const deadline = Date.now() + 10_000
      while (true) {
        const waiting = yield* query(
          holder,
          `select count(*)::int as n from pg_stat_activity
            where datname = current_database() and pid <> pg_backend_pid() and wait_event_type = 'Lock'`
        )
        if (waiting.rows[0].n > 0) break
        if (Date.now() > deadline) return yield* Effect.dieMessage("the refusal's append never waited for the lock")
        yield* Effect.sleep("20 millis")
      }

      // The database becomes unreachable for the hub; the waiting append ends without committing.
      proxy.cut()
      yield* query(
        holder,
        `select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()`
      )
      yield* Effect.sleep(OUTAGE_MS)
      yield* query(holder, `select pg_advisory_unlock($1)`, [PgEventLog.APPEND_LOCK_KEY])
      proxy.restore()

      // The spool's replayer backs off while the log is down (up to 4 s after a 5 s outage): allow for it.
      const refusals = () =>
        Effect.map(hub.events, (events) => events.filter((e) => e.event._tag === "ShareAccessed"))
      const until = Date.now() + 20_000
      while ((yield* refusals()).length === 0) {
        if (Date.now() > until) return yield* Effect.dieMessage("the refusal never reached the log")
        yield* Effect.sleep("100 millis")
      }
      yield* Effect.sleep("1 second")
      const found = yield* refusals()
      expect(found.map((e) => [e.workspaceId, (e.event as any).outcome, (e.event as any).reason, (e.event as any).agentId]))
        .toEqual([[workspaceId, "denied", "unknown_code", joiner.agentId]])
    }), { timeout: 60_000 })
})
