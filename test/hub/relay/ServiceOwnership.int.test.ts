/**
 * Service names against real Postgres: a name stays with the agent that exposed it while that agent is offline (a
 * reach never lands on another agent), until the agent unexposes it, an admin releases it, or the agent is revoked;
 * and what an agent exposes is checked (host, port, metadata addresses, the agent's allow list).
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect, Layer } from "effect"
import { EventLog } from "../../../core/EventLog.ts"
import { Streams } from "../../../core/Ids.ts"
import { Hello } from "../../../core/Protocol.ts"
import { serviceIdFor } from "../../../core/ServiceDecider.ts"
import * as Admin from "../../../hub/commands/Admin.ts"
import * as PgRelayPolicy from "../../../hub/relay/PgRelayPolicy.ts"
import * as Spool from "../../../hub/eventlog/Spool.ts"
import * as HubLog from "../../support/HubLog.ts"

const settings = HubLog.tokenSettings

const provision = (workspaceId: string, label: string) => HubLog.provisionAgent(workspaceId, label, 30)

/** A policy over the test log and a workspace with three connected agents. */
const setup = Effect.gen(function*() {
  const dir = yield* Effect.acquireRelease(
    Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-ownership-"))),
    (d) => Effect.sync(() => Fs.rmSync(d, { recursive: true, force: true }))
  )
  const policy = yield* PgRelayPolicy.make({ spool: yield* Spool.make(dir) })
  const { workspaceId } = yield* Admin.createWorkspace("w")
  const connect = Effect.fn(function*(label: string, port: number) {
    const agent = yield* provision(workspaceId, label)
    const session = yield* policy.authenticate(
      new Hello({ protocol: 1, token: agent.token, transport: "ws", agentVersion: "test" }),
      `10.0.0.${port}:1`
    )
    yield* policy.agentConnected(session, { remoteAddress: `10.0.0.${port}:1`, transport: "ws", agentVersion: "test" })
    return { ...agent, session }
  })
  return { policy, workspaceId, owner: yield* connect("owner", 1), a3: yield* connect("a3", 3), client: yield* connect("client", 4) }
})

const serviceRow = (name: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql.unsafe<{ agent_id: string; exposed: boolean }>(`select agent_id, exposed from services where name = $1`, [name]),
      (rows) => rows[0]
    ))

const serviceEvents = (workspaceId: string, name: string) =>
  Effect.flatMap(EventLog, (log) => log.readStream(Streams.service(serviceIdFor(workspaceId, name))))

describe("service ownership", () => {
  it.layer(Layer.merge(HubLog.layer, settings), { timeout: 60_000 })((it) => {
    it.scoped("keeps a name with its offline owner; an admin release or a revocation frees it, in the log", () =>
      Effect.gen(function*() {
        const { policy, workspaceId, owner, a3, client } = yield* setup
        yield* policy.expose(owner.session, { name: "secretdb", host: "127.0.0.1", port: 5432 })
        yield* policy.agentDisconnected(owner.session, { close: { code: 1006, reason: "" }, durationMs: 5 })

        // The owner is offline: A3 cannot take the name, and a reach never lands on A3.
        const refused = yield* Effect.flip(policy.expose(a3.session, { name: "secretdb", host: "127.0.0.1", port: 9999 }))
        expect(refused.code).toBe("Conflict")
        expect(refused.message).toContain(`connect hub service release secretdb --workspace ${workspaceId}`)
        expect((yield* Effect.flip(policy.resolveReach(client.session, "secretdb"))).code).toBe("AgentOffline")
        expect(yield* serviceRow("secretdb")).toEqual({ agent_id: owner.agentId, exposed: true })

        // The owner comes back and re-exposes: nothing recorded, the name is its own again.
        yield* policy.agentConnected(owner.session, { remoteAddress: "10.0.0.1:1", transport: "ws", agentVersion: "test" })
        yield* policy.expose(owner.session, { name: "secretdb", host: "127.0.0.1", port: 5432 })
        expect((yield* policy.resolveReach(client.session, "secretdb")).agentId).toBe(owner.agentId)

        // An admin releases it: recorded with the admin as actor; then A3 may expose it.
        expect(yield* Admin.releaseService(workspaceId, "secretdb")).toEqual({ releasedFrom: owner.agentId })
        expect(yield* serviceRow("secretdb")).toEqual({ agent_id: owner.agentId, exposed: false })
        const released = (yield* serviceEvents(workspaceId, "secretdb")).at(-1)!
        expect(released.event).toMatchObject({ _tag: "ServiceReleased", agentId: owner.agentId, reason: "admin" })
        expect(released.meta.actor).toEqual({ kind: "admin" })
        expect(yield* Effect.flip(Admin.releaseService(workspaceId, "secretdb"))).toMatchObject({ reason: "NotFound" })
        yield* policy.expose(a3.session, { name: "secretdb", host: "127.0.0.1", port: 9999 })
        expect((yield* policy.resolveReach(client.session, "secretdb")).agentId).toBe(a3.agentId)
        // The old owner coming back now meets the new one.
        expect((yield* Effect.flip(policy.expose(owner.session, { name: "secretdb", host: "127.0.0.1", port: 5432 }))).code)
          .toBe("Conflict")

        // Revoking A3 releases its names (and only its own) in the log; its live session can expose nothing more.
        yield* policy.expose(a3.session, { name: "cache", host: "127.0.0.1", port: 6379 })
        yield* policy.expose(owner.session, { name: "web", host: "127.0.0.1", port: 80 })
        expect(yield* Admin.revokeAgent(a3.agentId)).toEqual({ revoked: true, released: ["cache", "secretdb"] })
        for (const name of ["cache", "secretdb"]) {
          expect((yield* serviceEvents(workspaceId, name)).at(-1)!.event).toMatchObject({
            _tag: "ServiceReleased",
            agentId: a3.agentId,
            reason: "agent_revoked"
          })
          expect((yield* serviceRow(name))!.exposed).toBe(false)
        }
        expect((yield* serviceRow("web"))!.exposed).toBe(true)
        expect((yield* Effect.flip(policy.expose(a3.session, { name: "other", host: "127.0.0.1", port: 1 }))).code)
          .toBe("TokenRevoked")
        yield* policy.expose(owner.session, { name: "secretdb", host: "127.0.0.1", port: 5432 })
        expect((yield* policy.resolveReach(client.session, "secretdb")).agentId).toBe(owner.agentId)

        expect(yield* Effect.flip(Admin.releaseService("not-a-uuid", "secretdb"))).toMatchObject({ reason: "Invalid" })
      }))

    it.scoped("refuses malformed and metadata targets and holds an agent to its allow list", () =>
      Effect.gen(function*() {
        const { policy, owner } = yield* setup
        const log = yield* EventLog
        const before = (yield* log.readStream(Streams.agent(owner.agentId))).length
        const expose = (host: string, port = 80) => Effect.flip(policy.expose(owner.session, { name: "svc", host, port }))

        const huge = yield* expose("x".repeat(900_000))
        expect(huge.code).toBe("Forbidden")
        expect(huge.message.length).toBeLessThan(300)
        expect((yield* expose("127.0.0.1", 70_000)).message).toContain("1-65535")
        expect((yield* expose("169.254.169.254")).message).toContain("metadata")
        expect((yield* expose("2852039166")).code).toBe("Forbidden")
        expect(yield* serviceRow("svc")).toBeUndefined()

        const sql = yield* SqlClient.SqlClient
        const allowOf = () =>
          Effect.map(sql.unsafe<{ expose_allow: Array<string> | null }>(`select expose_allow from agents where id = $1`, [owner.agentId]), (r) => r[0]!.expose_allow)
        expect(yield* Admin.setAllowList(owner.agentId, ["10.0.0.0/8", "db.internal", "169.254.169.254"])).toEqual({ changed: true })
        expect(yield* allowOf()).toEqual(["10.0.0.0/8", "db.internal", "169.254.169.254"])
        const set = (yield* log.readStream(Streams.agent(owner.agentId))).slice(before).map((e) => e.event._tag)
        expect(set).toEqual(["AgentAllowListSet"])
        const outside = yield* expose("127.0.0.1", 5432)
        expect(outside).toMatchObject({ code: "Forbidden", message: expect.stringContaining("allow list") })
        yield* policy.expose(owner.session, { name: "svc", host: "10.2.3.4", port: 5432 })
        yield* policy.expose(owner.session, { name: "db", host: "db.internal", port: 5432 })
        yield* policy.expose(owner.session, { name: "meta", host: "169.254.169.254", port: 80 })
        expect(yield* Effect.flip(Admin.setAllowList(owner.agentId, ["10.0.0.0/40"]))).toMatchObject({ reason: "Invalid" })

        expect(yield* Admin.setAllowList(owner.agentId, undefined)).toEqual({ changed: true })
        expect(yield* allowOf()).toBeNull()
        yield* policy.expose(owner.session, { name: "local", host: "127.0.0.1", port: 5432 })
        expect((yield* expose("169.254.169.254")).code).toBe("Forbidden")
      }))
  })
})
