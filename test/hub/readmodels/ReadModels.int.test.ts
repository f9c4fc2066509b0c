import { describe, expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { EventLog } from "../../../core/EventLog.ts"
import * as E from "../../../core/Events.ts"
import { AgentId, ApiKeyId, Streams, uuidv7, WorkspaceId } from "../../../core/Ids.ts"
import { sha256Hex } from "../../../core/Secrets.ts"
import { serviceIdFor } from "../../../core/ServiceDecider.ts"
import * as ProjectionRunner from "../../../hub/eventlog/ProjectionRunner.ts"
import * as ReadModels from "../../../hub/readmodels/ReadModels.ts"
import * as Scoped from "../../../hub/db/Scoped.ts"
import * as HubLog from "../../support/HubLog.ts"

const meta = new E.EventMeta({ actor: { kind: "system" } })
const hash = (s: string) => E.Sha256Hex.make(sha256Hex(s))
const ws1 = WorkspaceId.make(uuidv7())
const ws2 = WorkspaceId.make(uuidv7())

/** Two workspaces, each with a key, an agent and a service, plus a rotation, a revocation and connections. */
const seed = Effect.gen(function*() {
  const log = yield* EventLog
  const append = (stream: string, workspaceId: string, events: ReadonlyArray<E.Event>) =>
    log.append(stream, events, { expectedVersion: "any", workspaceId, meta })
  const agents: Array<AgentId> = []
  for (const [i, ws] of [ws1, ws2].entries()) {
    const apiKeyId = ApiKeyId.make(uuidv7())
    yield* append(Streams.workspace(ws), ws, [
      new E.WorkspaceCreated({ workspaceId: ws, name: `ws${i + 1}` }),
      new E.ApiKeyCreated({ apiKeyId, workspaceId: ws, name: "admin", prefix: `pc_key${i}00`, keyHash: hash(`key${i}`) })
    ])
    yield* append(Streams.apiKey(apiKeyId), ws, [new E.ApiKeyRevoked({ apiKeyId })])
    const agentId = AgentId.make(uuidv7())
    agents.push(agentId)
    yield* append(Streams.agent(agentId), ws, [
      new E.AgentProvisioned({ agentId, label: `agent${i}`, tokenHash: hash(`t${i}`), expiresAt: new Date("2030-01-01") }),
      new E.AgentTokenRotated({
        agentId,
        newTokenHash: hash(`t${i}b`),
        newExpiresAt: new Date("2030-02-01"),
        oldValidUntil: new Date("2030-01-02")
      }),
      new E.AgentConnected({ agentId, ip: "10.0.0.1", userAgent: "test", transport: "ws" }),
      new E.AgentConnected({ agentId, ip: "10.0.0.2", userAgent: "test", transport: "ws" }),
      new E.AgentIpChanged({ agentId, previousIp: "10.0.0.1", newIp: "10.0.0.2" })
    ])
    const serviceId = serviceIdFor(ws, "db")
    yield* append(Streams.service(serviceId), ws, [
      new E.ServiceExposed({ serviceId, agentId, name: "db", targetHost: "127.0.0.1", targetPort: 5432 }),
      new E.ServiceUnexposed({ serviceId, agentId, name: "db" }),
      new E.ServiceExposed({ serviceId, agentId, name: "db", targetHost: "127.0.0.1", targetPort: 5433 })
    ])
  }
  yield* append(Streams.agent(agents[1]!), ws2, [
    new E.AgentDisconnected({ agentId: agents[1]!, reason: "closed", durationMs: 5 }),
    new E.AgentTokenRevoked({ agentId: agents[1]! })
  ])
  return agents
})

const tables = ["workspaces", "api_keys", "agents", "services"] as const

describe("read models", () => {
  it.layer(HubLog.layer, { timeout: 60_000 })((it) => {
    it.effect("are projected inline, row-level security hides other workspaces, and a rebuild equals the live model", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const agents = yield* seed
        const [a1] = yield* sql.unsafe<Record<string, unknown>>(`select * from agents where id = $1`, [agents[0]])
        expect(a1).toMatchObject({
          workspace_id: ws1,
          label: "agent0",
          token_hash: hash("t0b"),
          prev_token_hash: hash("t0"),
          last_ip: "10.0.0.2",
          connected: true,
          revoked_at: null
        })
        const [a2] = yield* sql.unsafe<Record<string, unknown>>(`select connected, revoked_at from agents where id = $1`, [agents[1]])
        expect(a2!.connected).toBe(false)
        expect(a2!.revoked_at).not.toBeNull()
        expect(yield* sql.unsafe(`select name, target_port, exposed from services order by workspace_id`)).toEqual([
          { name: "db", target_port: 5433, exposed: true },
          { name: "db", target_port: 5433, exposed: true }
        ])
        expect((yield* sql.unsafe<{ revoked_at: Date | null }>(`select revoked_at from api_keys`)).every((r) => r.revoked_at)).toBe(true)

        // As connect_app: nothing without a workspace, only its own rows with one.
        for (const table of tables) {
          expect(yield* Scoped.asApp(sql.unsafe(`select * from ${table}`))).toEqual([])
          const own = yield* Scoped.withWorkspace(ws1, sql.unsafe<{ workspace_id?: string; id: string }>(`select * from ${table}`))
          expect(own.length).toBe(1)
          expect(own[0]!.workspace_id ?? own[0]!.id).toBe(ws1)
        }
        // Writes are refused outright, and the credential lookups find exactly the matching row.
        const write = yield* Effect.either(Scoped.withWorkspace(ws1, sql.unsafe(`delete from agents`)))
        expect(write._tag).toBe("Left")
        const byToken = yield* Scoped.asApp(sql.unsafe<{ id: string }>(`select id from connect_agent_by_token($1)`, [hash("t1")]))
        expect(byToken.map((r) => r.id)).toEqual([agents[1]])
        const byKey = yield* Scoped.asApp(sql.unsafe<{ workspace_id: string }>(`select workspace_id from connect_api_key_by_hash($1)`, [hash("key0")]))
        expect(byKey.map((r) => r.workspace_id)).toEqual([ws1])

        for (const projection of ReadModels.projections) {
          const table = projection.name
          const snapshot = () => sql.unsafe(`select * from ${table} order by id`)
          const live = yield* snapshot()
          // The seed covers the tables above; the rest (shares, links) must rebuild to what they are, empty or not.
          if ((tables as ReadonlyArray<string>).includes(table)) expect(live.length).toBeGreaterThan(0)
          yield* ProjectionRunner.rebuild(projection, { pageSize: 3 })
          expect(yield* snapshot()).toEqual(live)
        }
        // The swapped-in tables keep their row-level security and the credential lookups.
        for (const table of tables) {
          expect(yield* Scoped.asApp(sql.unsafe(`select * from ${table}`))).toEqual([])
          expect((yield* Scoped.withWorkspace(ws2, sql.unsafe(`select * from ${table}`))).length).toBe(1)
        }
        const again = yield* Scoped.asApp(sql.unsafe<{ id: string }>(`select id from connect_agent_by_token($1)`, [hash("t1")]))
        expect(again.map((r) => r.id)).toEqual([agents[1]])
      }))
  })
})
