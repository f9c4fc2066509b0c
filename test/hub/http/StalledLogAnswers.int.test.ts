/**
 * API changes while the event log stalls (another session holds the append lock): an agent's CLI gives up after 15 s
 * and says it cannot reach the hub, while the writer may still commit the change it had batched (`ShareJoined`,
 * `AgentTokenRotated`, whose new token nobody would hold). The hub must answer first: 503 within the agent's 15 s,
 * saying the change may still be recorded and how to know; doing it again then works.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import Pg from "pg"
import { EventMeta } from "../../../core/Events.ts"
import { AgentId, Streams } from "../../../core/Ids.ts"
import { sha256Hex } from "../../../core/Secrets.ts"
import * as ServiceDecider from "../../../core/ServiceDecider.ts"
import * as Command from "../../../hub/commands/Command.ts"
import * as PgEventLog from "../../../hub/eventlog/PgEventLog.ts"
import * as Hub from "../../support/Hub.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"

/** What the agent's CLI waits for an answer (agent/HubApi.ts). */
const AGENT_WAITS_MS = 15_000

/** What `connect hub ... --hub URL` waits for an answer (hub/commands/AdminRemote.ts). */
const ADMIN_WAITS_MS = 30_000

/** A hub on a database of its own, and that database's URL (for a session that holds the append lock). */
const hubOnOwnDatabase = Effect.gen(function*() {
  const url = yield* TestDatabase.makeTestDatabaseUrl
  return { url, hub: yield* Hub.start({ databaseUrl: url }) }
})

/**
 * `POST path` with `bearer` while another session holds the append lock, given up after `waits` (the agent's 15 s) as
 * the client does (status 0); the lock is released once it is answered. Returns the answer and how long it took.
 */
const postWhileStalled = (url: string, hub: Hub.TestHub, path: string, bearer: string, body?: unknown, waits = AGENT_WAITS_MS) =>
  Effect.gen(function*() {
    const holder = new Pg.Client({ connectionString: url })
    yield* Effect.acquireRelease(Effect.promise(() => holder.connect()), () => Effect.promise(() => holder.end()))
    yield* Effect.promise(() => holder.query(`select pg_advisory_lock($1)`, [PgEventLog.APPEND_LOCK_KEY]))
    const started = Date.now()
    const answer = yield* Effect.promise(async () => {
      try {
        const response = await fetch(`${hub.httpUrl}${path}`, {
          method: "POST",
          headers: { authorization: `Bearer ${bearer}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
          signal: AbortSignal.timeout(waits)
        })
        return { status: response.status, body: await response.json() as any }
      } catch (e) {
        return { status: 0, body: String(e) }
      }
    })
    const waited = Date.now() - started
    yield* Effect.promise(() => holder.query(`select pg_advisory_unlock($1)`, [PgEventLog.APPEND_LOCK_KEY]))
    // Whatever the stalled append does once the lock is free (the writer commits what it had batched) is done by then.
    yield* Effect.sleep("1 second")
    return { ...answer, waited }
  }).pipe(Effect.scoped)

describe("API changes while the log stalls", () => {
  it.scopedLive("share join: 503 before the agent gives up, saying the join may still be recorded; joining again tells", () =>
    Effect.gen(function*() {
      const { url, hub } = yield* hubOnOwnDatabase
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

      const answer = yield* postWhileStalled(url, hub, "/v1/shares/join", joiner.token, { code: share.body.code })
      expect(answer.waited).toBeLessThan(AGENT_WAITS_MS)
      expect(answer.status).toBe(503)
      expect(answer.body.error.message).toMatch(/join may still be recorded/)

      // Joining again tells whether the stalled one went through, and the log holds one ShareJoined.
      const before = (yield* hub.events).filter((e) => e.event._tag === "ShareJoined").length
      const again = yield* hub.http("POST", "/v1/shares/join", joiner.token, { code: share.body.code })
      expect(again.status).toBe(200)
      expect(again.body.joined).toBe(before === 0)
      expect((yield* hub.events).filter((e) => e.event._tag === "ShareJoined")).toHaveLength(1)
    }), { timeout: 60_000 })

  it.scopedLive("token rotation: 503 before the agent gives up, saying to rotate again; rotating again works", () =>
    Effect.gen(function*() {
      const { url, hub } = yield* hubOnOwnDatabase
      const { apiKey } = yield* hub.workspace("rotating")
      const agent = (yield* hub.http("POST", "/v1/agents", apiKey, { label: "laptop" })).body as { token: string }

      const answer = yield* postWhileStalled(url, hub, "/v1/agents/rotate", agent.token)
      expect(answer.waited).toBeLessThan(AGENT_WAITS_MS)
      expect(answer.status).toBe(503)
      expect(answer.body.error.message).toMatch(/rotation may still be recorded.*rotate again/)

      // Whether or not the stalled rotation committed, the token held still rotates, and the new one is the current.
      const again = yield* hub.http("POST", "/v1/agents/rotate", agent.token)
      expect(again.status).toBe(200)
      const rotations = (yield* hub.events).filter((e) => e.event._tag === "AgentTokenRotated").map((e) => e.event as any)
      expect(rotations.at(-1)!.newTokenHash).toBe(sha256Hex(again.body.token))
      expect((yield* hub.http("POST", "/v1/agents/rotate", again.body.token)).status).toBe(200)
    }), { timeout: 60_000 })

  it.scopedLive("agent revocation by a key: 503 before the admin CLI gives up, saying to revoke again; revoking again tells", () =>
    Effect.gen(function*() {
      const { url, hub } = yield* hubOnOwnDatabase
      const { apiKey } = yield* hub.workspace("revoking")
      const agent = (yield* hub.http("POST", "/v1/agents", apiKey, { label: "lost" })).body as { agentId: string; token: string }

      const answer = yield* postWhileStalled(url, hub, `/v1/agents/${agent.agentId}/revoke`, apiKey, { reason: "lost" }, ADMIN_WAITS_MS)
      expect(answer.waited).toBeLessThan(AGENT_WAITS_MS)
      expect(answer.status).toBe(503)
      expect(answer.body.error.message).toMatch(/revocation may still be recorded.*revoke again/)

      const before = (yield* hub.events).filter((e) => e.event._tag === "AgentTokenRevoked").length
      const again = yield* hub.http("POST", `/v1/agents/${agent.agentId}/revoke`, apiKey, { reason: "lost" })
      expect(again.status).toBe(200)
      expect(again.body.revoked).toBe(before === 0)
      expect((yield* hub.events).filter((e) => e.event._tag === "AgentTokenRevoked")).toHaveLength(1)
      expect((yield* hub.http("POST", "/v1/agents/rotate", agent.token)).status).toBe(401)
    }), { timeout: 90_000 })

  it.scopedLive("link revocation: 503 before the CLI gives up, saying it may still be recorded; revoking again tells", () =>
    Effect.gen(function*() {
      const { url, hub } = yield* hubOnOwnDatabase
      const owner = yield* hub.workspace("owner")
      const exposer = (yield* hub.http("POST", "/v1/agents", owner.apiKey, { label: "exposer" })).body
      const serviceId = ServiceDecider.serviceIdFor(owner.workspaceId, "web")
      yield* hub.run(Command.handle(ServiceDecider.decider, Streams.service(serviceId), {
        _tag: "ExposeService",
        serviceId,
        workspaceId: owner.workspaceId,
        agentId: AgentId.make(exposer.agentId),
        name: "web",
        host: "127.0.0.1",
        port: 8080
      }, { workspaceId: owner.workspaceId, meta: new EventMeta({ actor: { kind: "admin" } }) })).pipe(Effect.orDie)
      const link = yield* hub.http("POST", "/v1/links", owner.apiKey, { service: "web" })
      expect(link.status).toBe(201)

      const answer = yield* postWhileStalled(url, hub, `/v1/links/${link.body.linkId}/revoke`, owner.apiKey)
      expect(answer.waited).toBeLessThan(AGENT_WAITS_MS)
      expect(answer.status).toBe(503)
      expect(answer.body.error.message).toMatch(/revocation may still be recorded.*connect link list/)

      const again = yield* hub.http("POST", `/v1/links/${link.body.linkId}/revoke`, owner.apiKey)
      expect(again.status).toBe(200)
      expect((yield* hub.events).filter((e) => e.event._tag === "LinkRevoked")).toHaveLength(1)
    }), { timeout: 90_000 })

  it.scopedLive("a refused join (unknown code) is answered 404 at once, its refusal recorded once the log takes it", () =>
    Effect.gen(function*() {
      const { url, hub } = yield* hubOnOwnDatabase
      const { apiKey } = yield* hub.workspace("stranger")
      const joiner = (yield* hub.http("POST", "/v1/agents", apiKey, { label: "joiner" })).body

      const answer = yield* postWhileStalled(url, hub, "/v1/shares/join", joiner.token, { code: `sh_${"0".repeat(32)}` })
      // Refused: nothing may still be recorded but the refusal, which must not hold the answer.
      expect(answer.status).toBe(404)
      expect(answer.waited).toBeLessThan(5_000)
      const denied = (yield* hub.events).filter((e) => e.event._tag === "ShareAccessed")
      expect(denied.map((e) => [(e.event as any).outcome, (e.event as any).reason])).toEqual([["denied", "unknown_code"]])
    }), { timeout: 60_000 })
})
