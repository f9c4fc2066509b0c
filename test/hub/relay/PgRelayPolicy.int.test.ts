import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect, Fiber, Layer, Schedule } from "effect"
import * as AgentDecider from "../../../core/AgentDecider.ts"
import { EventLog, EventLogError } from "../../../core/EventLog.ts"
import { EventMeta, TunnelClosed, TunnelOpened } from "../../../core/Events.ts"
import { AgentId, ServiceId, Streams, TunnelId, uuidv7 } from "../../../core/Ids.ts"
import { Hello } from "../../../core/Protocol.ts"
import { CLOSE_CODES } from "../../../core/Transport.ts"
import * as Admin from "../../../hub/commands/Admin.ts"
import * as Command from "../../../hub/commands/Command.ts"
import * as PgLeftOpen from "../../../hub/relay/PgLeftOpen.ts"
import * as PgRelayPolicy from "../../../hub/relay/PgRelayPolicy.ts"
import * as Spool from "../../../hub/eventlog/Spool.ts"
import * as HubLog from "../../support/HubLog.ts"

const settings = HubLog.tokenSettings

const provision = (workspaceId: string, label: string) => HubLog.provisionAgent(workspaceId, label, 1)

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
        yield* policy.agentDisconnected(session, { close: { code: CLOSE_CODES.Replaced, reason: "replaced by a new connection" }, durationMs: 10 })
        expect((yield* connected()).connected).toBe(true)
        yield* policy.agentDisconnected(session, { close: { code: 1006, reason: "" }, durationMs: 12.4 })
        expect((yield* connected()).connected).toBe(false)
        yield* policy.agentConnected(session, info("10.0.0.2:1"))
        expect(yield* PgLeftOpen.closeLeftOpen(uuidv7())).toEqual({ tunnels: 0, agents: 1 })
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
          "AgentDisconnected:hub_crashed:" + (events[7] as { durationMs: number }).durationMs
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
        yield* policy.agentDisconnected(session, { close: { code: CLOSE_CODES.Normal, reason: "bye" }, durationMs: 1 })
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

  // A database of its own: connections recorded by the test above name no hub, and such legacy ones count as anyone's.
  it.layer(Layer.merge(Layer.fresh(HubLog.layer), settings), { timeout: 60_000 })((it) => {
    it.scoped("at startup a hub closes in the log the tunnels and connections it left open, and only its own", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const log = yield* EventLog
        const { workspaceId } = yield* Admin.createWorkspace("w")
        const onHub = (hubId: string) => new EventMeta({ actor: { kind: "agent" }, hubId })
        const connectOn = (agentId: AgentId, hubId: string) =>
          Command.handle(AgentDecider.decider, Streams.agent(agentId), {
            _tag: "ConnectAgent", agentId, ip: "10.0.0.1", userAgent: "t", transport: "ws"
          }, { workspaceId, meta: onHub(hubId) })
        const mine = yield* provision(workspaceId, "mine")
        const theirs = yield* provision(workspaceId, "theirs")
        const moved = yield* provision(workspaceId, "moved")
        yield* connectOn(mine.agentId, "hub-a")
        yield* connectOn(theirs.agentId, "hub-b")
        // Connected to this hub once, then to the other one: the connection that is open is the other hub's.
        yield* connectOn(moved.agentId, "hub-a")
        yield* connectOn(moved.agentId, "hub-b")

        const serviceId = ServiceId.make(uuidv7())
        const open = (hubId: string) =>
          Effect.gen(function*() {
            const tunnelId = TunnelId.make(uuidv7())
            yield* log.append(Streams.tunnel(tunnelId), [
              new TunnelOpened({ tunnelId, serviceId, serviceName: "svc", toAgentId: mine.agentId, fromAgentId: theirs.agentId })
            ], { expectedVersion: "no_stream", workspaceId, meta: onHub(hubId) })
            return tunnelId
          })
        const left = yield* open("hub-a")
        const others = yield* open("hub-b")
        const done = yield* open("hub-a")
        yield* log.append(Streams.tunnel(done), [
          new TunnelClosed({ tunnelId: done, serviceId, bytesUp: 1, bytesDown: 2, durationMs: 3, reason: "end" })
        ], { expectedVersion: 1, workspaceId, meta: onHub("hub-a") })

        expect(yield* PgLeftOpen.closeLeftOpen("hub-a")).toEqual({ tunnels: 1, agents: 1 })
        expect(yield* PgLeftOpen.closeLeftOpen("hub-a")).toEqual({ tunnels: 0, agents: 0 })

        const tags = (stream: string) =>
          Effect.map(log.readStream(stream), (es) => es.map((e) => "reason" in e.event ? `${e.event._tag}:${e.event.reason}` : e.event._tag))
        expect(yield* tags(Streams.tunnel(left))).toEqual(["TunnelOpened", "TunnelClosed:hub_crashed"])
        expect(yield* tags(Streams.tunnel(others))).toEqual(["TunnelOpened"])
        expect(yield* tags(Streams.tunnel(done))).toEqual(["TunnelOpened", "TunnelClosed:end"])
        const closedEvent = (yield* log.readStream(Streams.tunnel(left)))[1]!
        expect(closedEvent.meta).toMatchObject({ actor: { kind: "system" }, hubId: "hub-a" })
        const connected = yield* sql.unsafe<{ label: string; connected: boolean }>(`select label, connected from agents order by label`)
        expect(connected).toEqual([
          { label: "mine", connected: false },
          { label: "moved", connected: true },
          { label: "theirs", connected: true }
        ])
        expect((yield* tags(Streams.agent(mine.agentId))).at(-1)).toBe("AgentDisconnected:hub_crashed")
      }))

    it.scoped("while the log is unavailable or the append is interrupted, disconnects and denials are spooled, then replayed once each", () =>
      Effect.gen(function*() {
        const log = yield* EventLog
        const dir = yield* Effect.acquireRelease(
          Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-policy-"))),
          (d) => Effect.sync(() => Fs.rmSync(d, { recursive: true, force: true }))
        )
        let mode: "up" | "down" | "hang" = "up"
        const flaky = EventLog.of({
          ...log,
          append: (stream, events, options) =>
            mode === "down"
              ? Effect.fail(new EventLogError({ reason: "Unavailable", message: "database down (test)" }))
              : mode === "hang"
              // Committed, and then the reply never comes.
              ? Effect.zipRight(log.append(stream, events, options), Effect.never)
              : log.append(stream, events, options)
        })
        const spool = yield* Spool.make(dir)
        const policy = yield* Effect.provideService(PgRelayPolicy.make({ spool, retry: Schedule.recurs(0) }), EventLog, flaky)
        const { workspaceId } = yield* Admin.createWorkspace("w")
        const a = yield* provision(workspaceId, "a")
        const session = yield* policy.authenticate(hello(a.token), "10.0.0.1:5000")
        yield* policy.agentConnected(session, { remoteAddress: "10.0.0.1:5000", transport: "ws", agentVersion: "1" })

        mode = "down"
        yield* policy.agentDisconnected(session, { close: { code: 1006, reason: "" }, durationMs: 7 })
        expect(spool.pending()).toBe(1)
        expect((yield* Effect.flip(policy.resolveReach(session, "nothing-here"))).code).toBe("ServiceNotFound")
        expect(spool.pending()).toBe(2)
        mode = "up"
        expect(yield* Effect.provideService(spool.replay, EventLog, log)).toBe(2)

        // Shutdown interrupts an append in flight: what it recorded is spooled, not lost, and (the append had in fact
        // committed) its replay is recognised by its id and stores nothing twice.
        mode = "hang"
        const fiber = yield* Effect.fork(policy.agentDisconnected(session, { close: { code: CLOSE_CODES.GoingAway, reason: "relay stopped" }, durationMs: 9 }))
        yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 300)))
        yield* Fiber.interrupt(fiber)
        expect(spool.pending()).toBe(1)

        mode = "up"
        expect(yield* Effect.provideService(spool.replay, EventLog, log)).toBe(1)
        const events = (yield* log.readStream(Streams.agent(a.agentId))).map((e) => e.event)
        expect(events.flatMap((e) => e._tag === "AgentDisconnected" ? [`${e.reason}:${e.durationMs}`] : [])).toEqual([
          "transport_error:7",
          "hub_shutdown:9"
        ])
        expect(events.filter((e) => e._tag === "ReachDenied").map((e) => (e as { requestedName: string }).requestedName)).toEqual(["nothing-here"])
      }))
  })

  it("maps relay reasons to the catalog's", () => {
    const reason = (code: number, reason: string) => PgRelayPolicy.disconnectReason({ code, reason })
    expect(reason(CLOSE_CODES.Normal, "client closed")).toBe("closed")
    expect(reason(CLOSE_CODES.Timeout, "heartbeat timeout")).toBe("heartbeat_timeout")
    expect(reason(CLOSE_CODES.GoingAway, "relay stopped")).toBe("hub_shutdown")
    expect(reason(CLOSE_CODES.Normal, "closed during hello")).toBe("closed")
    expect(reason(CLOSE_CODES.Replaced, "replaced by a new connection")).toBe("replaced")
    expect(reason(CLOSE_CODES.Unauthorized, "token revoked")).toBe("token_revoked")
    expect(reason(CLOSE_CODES.Protocol, "Data after End")).toBe("protocol_error")
    expect(reason(CLOSE_CODES.FrameTooLarge, "")).toBe("protocol_error")
    expect(reason(1006, "")).toBe("transport_error")
    // The reason is text for people: one that starts with another code's number is not read as that code.
    expect(reason(CLOSE_CODES.Normal, "4009 bye")).toBe("closed")
    expect(PgRelayPolicy.tunnelCloseReason("closed")).toBe("end")
    expect(PgRelayPolicy.tunnelCloseReason("AgentDisconnected")).toBe("agent_disconnected")
    expect(PgRelayPolicy.tunnelCloseReason("ECONNREFUSED")).toBe("connect_failed")
    expect(PgRelayPolicy.tunnelCloseReason("aborted")).toBe("reset")
  })
})
