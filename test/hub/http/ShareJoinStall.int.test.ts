/**
 * `connect join` while the event log stalls (another session holds the append lock): the agent gives up after 15 s,
 * and the hub's `ShareJoined` may still commit after that. The hub must answer first, and honestly: 503 within the
 * agent's 15 s, saying the join may still be recorded and that joining again tells (it answers "already joined").
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import Pg from "pg"
import { EventMeta } from "../../../core/Events.ts"
import { AgentId, Streams } from "../../../core/Ids.ts"
import * as ServiceDecider from "../../../core/ServiceDecider.ts"
import * as Command from "../../../hub/commands/Command.ts"
import * as PgEventLog from "../../../hub/eventlog/PgEventLog.ts"
import * as Hub from "../../support/Hub.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"

/** What `connect join` waits for an answer (agent/HubApi.ts). */
const AGENT_WAITS_MS = 15_000

describe("share join while the log stalls", () => {
  it.scopedLive("answers 503 before the agent gives up, saying the join may still be recorded", () =>
    Effect.gen(function*() {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      const hub = yield* Hub.start({ databaseUrl: url })
      const owner = yield* hub.workspace("owner")
      const other = yield* hub.workspace("other")
      const exposer = (yield* hub.http("POST", "/v1/agents", owner.apiKey, { label: "exposer" })).body
      const serviceId = ServiceDecider.serviceIdFor(owner.workspaceId, "db")
      yield* hub.run(Command.handle(ServiceDecider.decider, Streams.service(serviceId), {
        _tag: "ExposeService",
        serviceId,
        workspaceId: owner.workspaceId,
        agentId: AgentId.make(exposer.agentId),
        name: "db",
        host: "127.0.0.1",
        port: 5432
      }, { workspaceId: owner.workspaceId, meta: new EventMeta({ actor: { kind: "admin" } }) })).pipe(Effect.orDie)
      const share = yield* hub.http("POST", "/v1/shares", owner.apiKey, { services: ["db"] })
      expect(share.status).toBe(201)
      const joiner = (yield* hub.http("POST", "/v1/agents", other.apiKey, { label: "joiner" })).body

      // Another session holds the append lock: every append waits for it.
      const holder = new Pg.Client({ connectionString: url })
      yield* Effect.acquireRelease(Effect.promise(() => holder.connect()), () => Effect.promise(() => holder.end()))
      yield* Effect.promise(() => holder.query(`select pg_advisory_lock($1)`, [PgEventLog.APPEND_LOCK_KEY]))

      const started = Date.now()
      const answer = yield* Effect.promise(async () => {
        try {
          const response = await fetch(`${hub.httpUrl}/v1/shares/join`, {
            method: "POST",
            headers: { authorization: `Bearer ${joiner.token}`, "content-type": "application/json" },
            body: JSON.stringify({ code: share.body.code }),
            signal: AbortSignal.timeout(AGENT_WAITS_MS)
          })
          return { status: response.status, body: await response.json() as any }
        } catch (e) {
          return { status: 0, body: String(e) }
        }
      })
      const waited = Date.now() - started
      yield* Effect.promise(() => holder.query(`select pg_advisory_unlock($1)`, [PgEventLog.APPEND_LOCK_KEY]))

      // Answered before the agent gave up, as unavailable, and without claiming nothing happened.
      expect(waited).toBeLessThan(AGENT_WAITS_MS)
      expect(answer.status).toBe(503)
      expect(answer.body.error.message).toMatch(/may still be recorded/)

      // Whatever the stalled append did (the writer commits what it took into a batch), joining again tells it, and
      // the log holds one ShareJoined.
      yield* Effect.sleep("1 second")
      const before = (yield* hub.events).filter((e) => e.event._tag === "ShareJoined").length
      const again = yield* hub.http("POST", "/v1/shares/join", joiner.token, { code: share.body.code })
      expect(again.status).toBe(200)
      expect(again.body.joined).toBe(before === 0)
      expect((yield* hub.events).filter((e) => e.event._tag === "ShareJoined")).toHaveLength(1)
    }), { timeout: 60_000 })
})
