import * as Net from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import * as HubClient from "../../agent/HubClient.ts"
import type { Transport } from "../../core/Transport.ts"
import * as Msgpack from "../../transports/Msgpack.ts"
import * as Ws from "../../transports/Ws.ts"
import * as Hub from "../support/Hub.ts"

/** An echo server on 127.0.0.1 for the scope; resolves its port. */
export const echoServer = Effect.acquireRelease(
  Effect.async<Net.Server>((resume) => {
    const server = Net.createServer({ allowHalfOpen: true }, (socket) => {
      socket.on("error", () => {})
      socket.pipe(socket)
    })
    server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
  }),
  (server) => Effect.sync(() => server.close())
).pipe(Effect.map((server) => (server.address() as Net.AddressInfo).port))

/** Sends `data` through 127.0.0.1:`port`, half-closes, and resolves everything received until EOF. */
export const roundTrip = (port: number, data: Buffer) =>
  Effect.promise(
    () =>
      new Promise<Buffer>((resolve, reject) => {
        const socket = Net.connect({ port, host: "127.0.0.1", allowHalfOpen: true })
        const chunks: Array<Buffer> = []
        socket.on("data", (c: Buffer) => chunks.push(c))
        socket.once("end", () => {
          socket.end()
          resolve(Buffer.concat(chunks))
        })
        socket.once("error", reject)
        socket.once("connect", () => socket.end(data))
      })
  ).pipe(Effect.timeout("10 seconds"), Effect.orDie)

/** Polls `check` over the hub's events until it returns a value (at most 10 s). */
export const waitForEvents = <A>(hub: Hub.TestHub, check: (events: ReadonlyArray<any>) => A | undefined) =>
  Effect.gen(function*() {
    const deadline = Date.now() + 10_000
    while (true) {
      const found = check((yield* hub.events).map((e) => ({ ...e.event, _stream: e.stream, _workspaceId: e.workspaceId })))
      if (found !== undefined) return found
      if (Date.now() > deadline) return yield* Effect.dieMessage("expected events did not appear in time")
      yield* Effect.sleep("50 millis")
    }
  })

const provision = (hub: Hub.TestHub, apiKey: string, label: string) =>
  Effect.map(hub.http("POST", "/v1/agents", apiKey, { label }), (r) => {
    expect(r.status).toBe(201)
    return r.body as { agentId: string; workspaceId: string; token: string; expiresAt: string }
  })

const transports: ReadonlyArray<readonly [string, Transport]> = [["ws", Ws.transport], ["msgpack", Msgpack.transport]]

describe.each(transports)("gateway over %s", (name, transport) => {
  it.scopedLive("an agent provisioned over HTTP connects, exposes, is reached, and the tunnel is on the log with its bytes", () =>
    Effect.gen(function*() {
      const hub = yield* Hub.start()
      const { workspaceId, apiKey } = yield* hub.workspace("acme")
      const a = yield* provision(hub, apiKey, "exposer")
      const b = yield* provision(hub, apiKey, "reacher")
      expect(a.workspaceId).toBe(workspaceId)
      expect(a.token).toMatch(/^[0-9a-f]{64}$/)
      const clientA = yield* HubClient.connect({ url: hub.agentUrl, transport, token: a.token })
      expect(clientA.welcome.agentId).toBe(a.agentId)
      expect(clientA.welcome.workspaceId).toBe(workspaceId)
      expect(clientA.welcome.tokenExpiresAt).toBeUndefined()
      const clientB = yield* HubClient.connect({ url: hub.agentUrl, transport, token: b.token })
      const target = yield* echoServer
      yield* clientA.expose("prod-db", "127.0.0.1", target)
      // Re-exposing the same target is idempotent.
      yield* clientA.expose("prod-db", "127.0.0.1", target)
      const listener = yield* clientB.reach("prod-db")
      const payload = Buffer.alloc(200_000, 7)
      const echoed = yield* roundTrip(listener.port, payload)
      expect(echoed.equals(payload)).toBe(true)

      const closed = yield* waitForEvents(hub, (events) => events.find((e) => e._tag === "TunnelClosed"))
      expect(closed).toMatchObject({ bytesUp: 200_000, bytesDown: 200_000, reason: "end" })
      const events = yield* hub.events
      const types = events.map((e) => e.event._tag)
      expect(types.filter((t) => t === "ServiceExposed")).toHaveLength(1)
      const opened = events.find((e) => e.event._tag === "TunnelOpened")!
      expect(opened.event).toMatchObject({ serviceName: "prod-db", fromAgentId: b.agentId, toAgentId: a.agentId })
      expect(opened.stream).toBe(`tunnel-${(opened.event as any).tunnelId}`)
      expect(events.find((e) => e.event._tag === "TunnelClosed")!.stream).toBe(opened.stream)
      expect(events.filter((e) => e.event._tag === "AgentConnected").map((e) => e.event)).toEqual([
        expect.objectContaining({ agentId: a.agentId, ip: "127.0.0.1", transport: name }),
        expect.objectContaining({ agentId: b.agentId, ip: "127.0.0.1", transport: name })
      ])
      // No secret in clear anywhere in the log.
      const everything = JSON.stringify(events.map((e) => [e.dataJson, e.metaJson]))
      for (const secret of [apiKey, a.token, b.token]) expect(everything).not.toContain(secret)

      const services = yield* hub.http("GET", "/v1/services", b.token)
      expect(services).toEqual({
        status: 200,
        body: { services: [{ name: "prod-db", agentId: a.agentId, agentLabel: "exposer", online: true }] }
      })
      // The exposer leaves: its service stays listed, offline, and reaching it is refused.
      yield* Effect.sync(() => clientA.connection.close(1000, "bye"))
      yield* waitForEvents(hub, (events) => events.find((e) => e._tag === "AgentDisconnected" && e.agentId === a.agentId))
      const after = yield* hub.http("GET", "/v1/services", apiKey)
      expect(after.body.services).toEqual([{ name: "prod-db", agentId: a.agentId, agentLabel: "exposer", online: false }])
      const offline = yield* Effect.exit(clientB.reach("prod-db"))
      expect(Exit.isFailure(offline) && JSON.stringify(offline.cause)).toContain("AgentOffline")
    }), 60_000)
})
