/**
 * `connect up --rotate-token` while the event log stalls (another session holds the append lock): the agent gives up
 * after 15 s saying it cannot reach the hub, while the writer may still commit `AgentTokenRotated`, whose new token
 * nobody holds: the agent's token would then die at the end of the grace period (24 h) with nothing said. The hub
 * must answer first, 503 saying the rotation may still be recorded and to rotate again; rotating again then works.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import Pg from "pg"
import { sha256Hex } from "../../../core/Secrets.ts"
import * as PgEventLog from "../../../hub/eventlog/PgEventLog.ts"
import * as Hub from "../../support/Hub.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"

/** What the agent's CLI waits for an answer (agent/HubApi.ts). */
const AGENT_WAITS_MS = 15_000

describe("token rotation while the log stalls", () => {
  it.scopedLive("answers 503 before the agent gives up, saying to rotate again; rotating again works", () =>
    Effect.gen(function*() {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      const hub = yield* Hub.start({ databaseUrl: url })
      const { apiKey } = yield* hub.workspace("rotating")
      const agent = (yield* hub.http("POST", "/v1/agents", apiKey, { label: "laptop" })).body as { agentId: string; token: string }

      // Another session holds the append lock: every append waits for it.
      const holder = new Pg.Client({ connectionString: url })
      yield* Effect.acquireRelease(Effect.promise(() => holder.connect()), () => Effect.promise(() => holder.end()))
      yield* Effect.promise(() => holder.query(`select pg_advisory_lock($1)`, [PgEventLog.APPEND_LOCK_KEY]))
      const started = Date.now()
      const answer = yield* Effect.promise(async () => {
        try {
          const response = await fetch(`${hub.httpUrl}/v1/agents/rotate`, {
            method: "POST",
            headers: { authorization: `Bearer ${agent.token}` },
            signal: AbortSignal.timeout(AGENT_WAITS_MS)
          })
          return { status: response.status, body: await response.json() as any }
        } catch (e) {
          return { status: 0, body: String(e) }
        }
      })
      const waited = Date.now() - started
      yield* Effect.promise(() => holder.query(`select pg_advisory_unlock($1)`, [PgEventLog.APPEND_LOCK_KEY]))

      expect(waited).toBeLessThan(AGENT_WAITS_MS)
      expect(answer.status).toBe(503)
      expect(answer.body.error.message).toMatch(/rotation may still be recorded.*rotate again/)

      // Whether or not the stalled rotation committed, the token held still rotates, and the new one is the current.
      yield* Effect.sleep("1 second")
      const again = yield* hub.http("POST", "/v1/agents/rotate", agent.token)
      expect(again.status).toBe(200)
      const rotations = (yield* hub.events).filter((e) => e.event._tag === "AgentTokenRotated").map((e) => e.event as any)
      expect(rotations.length).toBeGreaterThanOrEqual(1)
      expect(rotations.at(-1)!.newTokenHash).toBe(sha256Hex(again.body.token))
      expect((yield* hub.http("POST", "/v1/agents/rotate", again.body.token)).status).toBe(200)
    }), { timeout: 60_000 })
})
