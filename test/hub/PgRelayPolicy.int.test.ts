import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect, Layer } from "effect"
import * as AgentDecider from "../../core/AgentDecider.ts"
import { EventLog } from "../../core/EventLog.ts"
import { EventMeta } from "../../core/Events.ts"
import { AgentId, Streams, uuidv7 } from "../../core/Ids.ts"
import { Hello } from "../../core/Protocol.ts"
import { generateAgentToken, sha256Hex } from "../../core/Secrets.ts"
import * as Admin from "../../hub/Admin.ts"
import * as AgentAuth from "../../hub/AgentAuth.ts"
import * as Command from "../../hub/Command.ts"
import * as PgRelayPolicy from "../../hub/PgRelayPolicy.ts"
import * as Spool from "../../hub/Spool.ts"
import * as HubLog from "../support/HubLog.ts"

const settings = Layer.succeed(AgentAuth.TokenSettings, { ttlDays: 30, now: () => new Date() })

const provision = (workspaceId: string, label: string) =>
  Effect.gen(function*() {
    const agentId = AgentId.make(uuidv7())
    const token = generateAgentToken()
    yield* Command.handle(AgentDecider.decider, Streams.agent(agentId), {
      _tag: "ProvisionAgent",
      agentId,
      label,
      tokenHash: sha256Hex(token),
      expiresAt: new Date(Date.now() + 86_400_000)
    }, { workspaceId, meta: new EventMeta({ actor: { kind: "admin" } }) })
    return { agentId, token }
  })

const hello = (token: string) => new Hello({ protocol: 1, token, transport: "ws", agentVersion: "test" })

describe("PgRelayPolicy", () => {
  it.layer(Layer.merge(HubLog.layer, settings), { timeout: 60_000 })((it) => {
    it.scoped("records IP changes, maps disconnect reasons, sweeps stale connections, and records a tunnel's close once", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const log = yield* EventLog
        const dir = yield* Effect.acquireRelease(
          Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-policy-"))),
          (d) => Effect.sync(() => Fs.rmSync(d, { recursive: true, force: true }))
        )
        const spool = yield* Spool.make(dir)
        const policy = yield* PgRelayPolicy.make({ spool })
        const { workspaceId } = yield* Admin.createWorkspace("w")
        const a = yield* provision(workspaceId, "a")
        const b = yield* provision(workspaceId, "b")
        const session = yield* policy.authenticate(hello(a.token), "10.0.0.1:5000")
        expect(session).toMatchObject({ agentId: a.agentId, workspaceId, label: "a" })
        // Expires within a day: the agent is warned.
        expect(session.tokenExpiresAt).toBeDefined()

        const connected = () =>
          Effect.map(sql.unsafe<{ connected: boolean; last_ip: string }>(`select connected, last_ip from agents where id = $1`, [a.agentId]), (r) => r[0]!)
        const info = (remoteAddress: string) => ({ remoteAddress, transport: "ws", agentVersion: "1.0" })
        yield* policy.agentConnected(session, info("10.0.0.1:5000"))
        yield* policy.agentConnected(session, info("[::ffff:10.0.0.2]:6000"))
        expect(yield* connected()).toEqual({ connected: true, last_ip: "10.0.0.2" })
        yield* policy.agentDisconnected(session, { reason: "4009 replaced by a new connection", durationMs: 10 })
        expect((yield* connected()).connected).toBe(true)
        yield* policy.agentDisconnected(session, { reason: "1006 ", durationMs: 12.4 })
        expect((yield* connected()).connected).toBe(false)
        yield* policy.agentConnected(session, info("10.0.0.2:1"))
        expect(yield* PgRelayPolicy.sweepStaleConnections).toBe(1)
        expect((yield* connected()).connected).toBe(false)

        const events = (yield* log.readStream(Streams.agent(a.agentId))).map((e) => e.event)
        expect(events.map((e) => e._tag === "AgentDisconnected" ? `${e._tag}:${e.reason}:${e.durationMs}` : e._tag)).toEqual([
          "AgentProvisioned",
          "AgentConnected",
          "AgentConnected",
          "AgentIpChanged",
          "AgentDisconnected:replaced:10",
          "AgentDisconnected:transport_error:12",
          "AgentConnected",
          "AgentDisconnected:hub_shutdown:" + (events[7] as { durationMs: number }).durationMs
        ])
        expect(events[3]).toMatchObject({ previousIp: "10.0.0.1", newIp: "10.0.0.2" })

        // A tunnel: opened once (a second open of the same id is refused), closed once however often it is reported.
        yield* policy.agentConnected(session, info("10.0.0.2:1"))
        yield* policy.expose(session, { name: "svc", host: "127.0.0.1", port: 9 })
        const sessionB = yield* policy.authenticate(hello(b.token), "10.0.0.3:1")
        const route = yield* policy.resolveReach(sessionB, "svc")
        const tunnel = { tunnelId: uuidv7(), from: sessionB, to: route, remoteAddress: "10.0.0.3:1" }
        yield* policy.tunnelOpened(tunnel)
        expect((yield* Effect.flip(policy.tunnelOpened(tunnel))).code).toBe("Unavailable")
        const totals = { bytesUp: 3, bytesDown: 4, durationMs: 5, reason: "ECONNRESET" }
        yield* policy.tunnelClosed(tunnel, totals)
        yield* policy.tunnelClosed(tunnel, totals)
        const tunnelEvents = (yield* log.readStream(Streams.tunnel(tunnel.tunnelId as never))).map((e) => e.event)
        expect(tunnelEvents.map((e) => e._tag)).toEqual(["TunnelOpened", "TunnelClosed"])
        expect(tunnelEvents[1]).toMatchObject({ bytesUp: 3, bytesDown: 4, durationMs: 5, reason: "reset" })

        // Another agent's name is taken, online or not (see ServiceOwnership.int.test.ts); unexposing is the owner's.
        yield* policy.agentConnected(sessionB, info("10.0.0.3:1"))
        expect(yield* Effect.flip(policy.expose(sessionB, { name: "svc", host: "127.0.0.1", port: 10 }))).toMatchObject({ code: "Conflict" })
        expect((yield* Effect.flip(policy.unexpose(sessionB, "svc"))).code).toBe("ServiceNotFound")
        yield* policy.expose(sessionB, { name: "other", host: "127.0.0.1", port: 10 })
        yield* policy.unexpose(sessionB, "other")
        expect((yield* Effect.flip(policy.resolveReach(session, "other"))).message).toBe("Service not found")
        yield* policy.agentDisconnected(session, { reason: "1000 bye", durationMs: 1 })
        expect((yield* Effect.flip(policy.resolveReach(sessionB, "svc"))).code).toBe("AgentOffline")
        expect(yield* Effect.flip(policy.expose(sessionB, { name: "svc", host: "127.0.0.1", port: 10 }))).toMatchObject({ code: "Conflict" })
        yield* policy.agentConnected(session, info("10.0.0.2:1"))
        expect((yield* policy.resolveReach(sessionB, "svc")).agentId).toBe(a.agentId)
        yield* policy.expose(sessionB, { name: "bsvc", host: "127.0.0.1", port: 10 })
        const reasons = (yield* log.readStream(Streams.agent(b.agentId)))
          .flatMap((e) => (e.event._tag === "ReachDenied" ? [e.event.reason] : []))
        expect(reasons).toEqual(["agent_offline"])

        // Revoked while connected: its live session reaches nothing more.
        yield* Admin.revokeAgent(b.agentId)
        expect((yield* Effect.flip(policy.resolveReach(sessionB, "svc"))).code).toBe("TokenRevoked")
        expect((yield* Effect.flip(policy.resolveReach(sessionB, "nothing"))).code).toBe("TokenRevoked")
        expect((yield* Effect.flip(policy.authenticate(hello(b.token), "10.0.0.3:1"))).code).toBe("TokenRevoked")
        // Its names were released with it.
        expect((yield* Effect.flip(policy.resolveReach(session, "bsvc"))).code).toBe("ServiceNotFound")
      }))
  })

  it("maps relay reasons to the catalog's", () => {
    expect(PgRelayPolicy.disconnectReason("1000 client closed")).toBe("closed")
    expect(PgRelayPolicy.disconnectReason("4008 heartbeat timeout")).toBe("heartbeat_timeout")
    expect(PgRelayPolicy.disconnectReason("1001 relay stopped")).toBe("hub_shutdown")
    expect(PgRelayPolicy.disconnectReason("closed during hello")).toBe("closed")
    expect(PgRelayPolicy.tunnelCloseReason("closed")).toBe("end")
    expect(PgRelayPolicy.tunnelCloseReason("AgentDisconnected")).toBe("agent_disconnected")
    expect(PgRelayPolicy.tunnelCloseReason("ECONNREFUSED")).toBe("connect_failed")
    expect(PgRelayPolicy.tunnelCloseReason("aborted")).toBe("reset")
  })
})
