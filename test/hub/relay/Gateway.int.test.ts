import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { PgClient } from "@effect/sql-pg"
import { Effect, Exit, Layer, Redacted, Scope } from "effect"
import * as HubClient from "../../../agent/HubClient.ts"
import { EventLog } from "../../../core/EventLog.ts"
import * as Protocol from "../../../core/Protocol.ts"
import * as Admin from "../../../hub/commands/Admin.ts"
import * as PgEventLog from "../../../hub/eventlog/PgEventLog.ts"
import type { Transport } from "../../../core/Transport.ts"
import * as Msgpack from "../../../transports/Msgpack.ts"
import * as Ws from "../../../transports/Ws.ts"
import { echoServer } from "../../support/Echo.ts"
import * as Hub from "../../support/Hub.ts"
import * as TcpProxy from "../../support/TcpProxy.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"

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
export const waitForEvents = <A>(
  hub: Hub.TestHub,
  check: (events: ReadonlyArray<any>) => A | undefined,
  ms = 10_000
) =>
  Effect.gen(function*() {
    const deadline = Date.now() + ms
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
      // Every event names the hub that appended it, whether it came through the HTTP API or the gateway.
      const hubIds = new Set(events.map((e) => JSON.parse(e.metaJson).hubId))
      expect([...hubIds]).toEqual([expect.stringMatching(/^[0-9a-f-]{36}$/)])
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

const denial = <A, E>(effect: Effect.Effect<A, E, any>) =>
  Effect.map(Effect.flip(effect as Effect.Effect<A, E>), (e: any) => ({ code: e.code as string, message: e.message as string }))

describe("gateway", () => {
  it.scopedLive("an agent of workspace 2 can neither list, discover nor reach workspace 1's services; every attempt is audited", () =>
    Effect.gen(function*() {
      const hub = yield* Hub.start()
      const w1 = yield* hub.workspace("one")
      const w2 = yield* hub.workspace("two")
      const a = yield* provision(hub, w1.apiKey, "a")
      const c = yield* provision(hub, w2.apiKey, "c")
      const clientA = yield* HubClient.connect({ url: hub.agentUrl, transport: Ws.transport, token: a.token })
      const clientC = yield* HubClient.connect({ url: hub.agentUrl, transport: Ws.transport, token: c.token })
      let targetConnections = 0
      const target = yield* Effect.acquireRelease(
        Effect.async<Net.Server>((resume) => {
          const server = Net.createServer((socket) => {
            targetConnections++
            socket.destroy()
          })
          server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
        }),
        (server) => Effect.sync(() => server.close())
      )
      yield* clientA.expose("prod-db", "127.0.0.1", (target.address() as Net.AddressInfo).port)
      const serviceId = (yield* waitForEvents(hub, (es) => es.find((e) => e._tag === "ServiceExposed"))).serviceId as string

      // API: workspace 2 sees none of it, with its agent token or its API key.
      expect(yield* hub.http("GET", "/v1/services", c.token)).toEqual({ status: 200, body: { services: [] } })
      expect(yield* hub.http("GET", "/v1/services", w2.apiKey)).toEqual({ status: 200, body: { services: [] } })
      const agents = yield* hub.http("GET", "/v1/agents", w2.apiKey)
      expect(agents.body.agents.map((x: any) => x.agentId)).toEqual([c.agentId])

      // Gateway: discover (Reach) by name, by id, and an unknown name all get the same answer.
      const notFound = { code: "ServiceNotFound", message: "Service not found" }
      expect(yield* denial(clientC.reach("prod-db"))).toEqual(notFound)
      expect(yield* denial(clientC.reach(serviceId))).toEqual(notFound)
      expect(yield* denial(clientC.reach("no-such-service"))).toEqual(notFound)
      // Reach without asking first: open a stream straight away.
      const closed = yield* Effect.promise(
        () =>
          new Promise<boolean>((resolve) => {
            const server = Net.createServer((socket) => {
              socket.on("error", () => {})
              clientC.open("prod-db", socket)
              server.close()
            })
            server.listen(0, "127.0.0.1", () => {
              const local = Net.connect((server.address() as Net.AddressInfo).port, "127.0.0.1")
              local.on("error", () => {})
              local.once("close", () => resolve(true))
            })
          })
      ).pipe(Effect.timeout("10 seconds"))
      expect(closed).toBe(true)

      // Denials of one agent and reason are coalesced per 10 s window: the first of each at once, the rest of the
      // window in one event with a count and a sample of the names (the window ends ~10 s after its first denial).
      const firsts = yield* waitForEvents(hub, (es) => {
        const found = es.filter((e) => e._tag === "ReachDenied")
        return found.length >= 2 ? found : undefined
      })
      expect(firsts.map((e) => [e.requestedName, e.reason, e.fromAgentId, e._workspaceId, e.count])).toEqual([
        // Workspace 2 reads not_found for workspace 1's name as for any other; the detail is hub-level (the operator's).
        ["prod-db", "not_found", c.agentId, w2.workspaceId, undefined],
        ["prod-db", "cross_workspace", c.agentId, null, undefined]
      ])
      const denied = yield* waitForEvents(hub, (es) => {
        const found = es.filter((e) => e._tag === "ReachDenied")
        return found.length >= 4 ? found : undefined
      }, 15_000)
      expect(denied.slice(2).map((e) => [e.reason, e.count, e.sample, e.fromAgentId, e._workspaceId]).sort()).toEqual([
        ["cross_workspace", 1, ["prod-db"], c.agentId, null],
        ["not_found", 3, [serviceId, "no-such-service", "prod-db"], c.agentId, w2.workspaceId]
      ])
      expect((yield* hub.events).some((e) => e.event._tag === "TunnelOpened")).toBe(false)
      expect(targetConnections).toBe(0)
      // The same name in workspace 2 is its own service, no conflict with workspace 1's.
      const echo = yield* echoServer
      yield* clientC.expose("prod-db", "127.0.0.1", echo)
      const own = yield* clientC.reach("prod-db")
      expect((yield* roundTrip(own.port, Buffer.from("mine"))).toString()).toBe("mine")
      expect(targetConnections).toBe(0)
    }), 60_000)

  it.scopedLive("5,000 Opens for names that do not exist: the log grows by a handful of events, other tenants unharmed", () =>
    Effect.gen(function*() {
      const hub = yield* Hub.start()
      const w1 = yield* hub.workspace("victim")
      const w2 = yield* hub.workspace("attacker")
      const a = yield* provision(hub, w1.apiKey, "a")
      const b = yield* provision(hub, w1.apiKey, "b")
      const x = yield* provision(hub, w2.apiKey, "x")
      const clientA = yield* HubClient.connect({ url: hub.agentUrl, transport: Msgpack.transport, token: a.token })
      const clientB = yield* HubClient.connect({ url: hub.agentUrl, transport: Msgpack.transport, token: b.token })
      yield* clientA.expose("db", "127.0.0.1", yield* echoServer)
      const listener = yield* clientB.reach("db")
      const before = (yield* hub.events).length

      const attacker = yield* Msgpack.transport.dial(hub.agentUrl)
      let answered = 0
      let welcomed!: () => void
      const welcome = new Promise<void>((r) => (welcomed = r))
      attacker.setHandler({
        message: (m) => (m._tag === "Welcome" ? welcomed() : void (m._tag === "Error" && answered++)),
        close: () => {}
      })
      attacker.send(new Protocol.Hello({ protocol: 1, token: x.token, transport: "msgpack", agentVersion: "x" }))
      yield* Effect.promise(() => welcome)
      for (let i = 0; i < 5_000; i++) attacker.send(Protocol.Open.make({ stream: 2 * i + 1, service: `nope-${i}` }))
      // Meanwhile, a tunnel in the other workspace opens and carries bytes.
      const started = Date.now()
      expect((yield* roundTrip(listener.port, Buffer.from("ping"))).toString()).toBe("ping")
      const tunnelMs = Date.now() - started
      yield* Effect.promise(async () => {
        const deadline = Date.now() + 30_000
        while (answered < 5_000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
      })
      expect(answered).toBe(5_000)
      expect(attacker.closed).toBe(false)
      attacker.close(1000, "done")
      const denied = yield* waitForEvents(hub, (es) => {
        const found = es.filter((e) => e._tag === "ReachDenied")
        return found.reduce((n, e) => n + (e.count ?? 1), 0) === 5_000 ? found : undefined
      }, 20_000)
      // Per agent and reason: the first refusal at once, the rest of each 10 s window in one event with a sample.
      expect(denied.length).toBeLessThanOrEqual(8)
      expect(denied.every((e) => e.fromAgentId === x.agentId && e._workspaceId === w2.workspaceId)).toBe(true)
      expect(denied.find((e) => e.count !== undefined)?.sample.length).toBe(8)
      const grown = (yield* hub.events).length - before
      // 2 tunnel events, AgentConnected/Disconnected of the attacker, and the coalesced denials.
      expect(grown).toBeLessThanOrEqual(16)
      console.log(`gateway flood: other tenant's tunnel round trip ${tunnelMs} ms during 5,000 Opens; log grew by ${grown} events`)
    }), 90_000)

  it.scopedLive("tokens: expiry warning, rotation with a 24 h grace, expiry and revocation are refused and audited", () =>
    Effect.gen(function*() {
      const day = 24 * 60 * 60 * 1000
      const hub = yield* Hub.start({ start: new Date("2026-01-01T00:00:00.000Z") })
      const w = yield* hub.workspace("tokens")
      const a = yield* provision(hub, w.apiKey, "a")
      expect(a.expiresAt).toBe("2026-01-31T00:00:00.000Z")
      const connect = (token: string) => HubClient.connect({ url: hub.agentUrl, transport: Ws.transport, token })
      const once = (token: string) =>
        Effect.scoped(Effect.map(connect(token), (client) => client.welcome.tokenExpiresAt ?? null))

      expect(yield* once(a.token)).toBeNull()
      hub.advance(24 * day)
      expect(yield* once(a.token)).toBe("2026-01-31T00:00:00.000Z")

      const rotated = yield* hub.http("POST", "/v1/agents/rotate", a.token)
      expect(rotated.status).toBe(200)
      expect(rotated.body).toMatchObject({ expiresAt: "2026-02-24T00:00:00.000Z", oldValidUntil: "2026-01-26T00:00:00.000Z" })
      const next = rotated.body.token as string
      expect(next).toMatch(/^[0-9a-f]{64}$/)
      // The old token still works for 24 h (and warns that it ends then), the new one does not warn.
      expect(yield* once(a.token)).toBe("2026-01-26T00:00:00.000Z")
      expect(yield* once(next)).toBeNull()
      hub.advance(day + 1)
      expect(yield* denial(connect(a.token))).toEqual({ code: "TokenExpired", message: "agent token expired" })
      expect(yield* once(next)).toBeNull()
      hub.advance(60 * day)
      expect((yield* denial(connect(next))).code).toBe("TokenExpired")
      expect((yield* hub.http("GET", "/v1/services", next)).status).toBe(401)

      const b = yield* provision(hub, w.apiKey, "b")
      expect(yield* once(b.token)).toBeNull()
      const live = yield* connect(b.token)
      yield* hub.run(Admin.revokeAgent(b.agentId, "laptop stolen"))
      // The live connection of a revoked agent is ended by the hub.
      const ended = yield* live.closed.pipe(Effect.timeout("5 seconds"))
      expect(ended.code).toBe(4001)
      yield* waitForEvents(hub, (es) =>
        es.find((e) => e._tag === "AgentDisconnected" && e.agentId === b.agentId && e.reason === "token_revoked"))
      expect((yield* denial(connect(b.token))).code).toBe("TokenRevoked")
      const api = yield* hub.http("GET", "/v1/services", b.token)
      expect(api).toEqual({ status: 401, body: { error: { code: "Unauthorized", message: "agent token revoked" } } })
      expect((yield* hub.http("POST", "/v1/agents/rotate", b.token)).status).toBe(401)
      const unknown = "f".repeat(64)
      expect((yield* denial(connect(unknown))).code).toBe("Unauthorized")

      const failures = yield* waitForEvents(hub, (es) => {
        const found = es.filter((e) => e._tag === "AgentAuthFailed")
        return found.length >= 7 ? found : undefined
      })
      const expected: Array<ReadonlyArray<string | null>> = [
        [a.agentId, "expired_token", "127.0.0.1", a.token.slice(0, 8)],
        [a.agentId, "expired_token", "127.0.0.1", next.slice(0, 8)],
        [a.agentId, "expired_token", "127.0.0.1", next.slice(0, 8)],
        [b.agentId, "revoked_token", "127.0.0.1", b.token.slice(0, 8)],
        [b.agentId, "revoked_token", "127.0.0.1", b.token.slice(0, 8)],
        [b.agentId, "revoked_token", "127.0.0.1", b.token.slice(0, 8)],
        [null, "unknown_token", "127.0.0.1", "ffffffff"]
      ]
      expect(failures.map((e) => [e.agentId ?? null, e.reason, e.ip, e.tokenPrefix])).toEqual(expected)
      expect(failures[6]._stream).toBe("auth-unknown")
      const types = (yield* hub.events).map((e) => e.event._tag)
      expect(types.filter((t) => t === "AgentTokenRotated")).toHaveLength(1)
      expect(types.filter((t) => t === "AgentTokenRevoked")).toHaveLength(1)
    }), 60_000)
})

describe("gateway while Postgres is unreachable", () => {
  it.scopedLive("an open tunnel keeps flowing, new ones are refused, and its TunnelClosed is spooled and appended once on recovery", () =>
    Effect.gen(function*() {
      const url = new URL(yield* TestDatabase.makeTestDatabaseUrl)
      const proxy = yield* TcpProxy.start(url.hostname, Number(url.port || 5432))
      url.hostname = "127.0.0.1"
      url.port = String(proxy.port)
      const hub = yield* Hub.start({ databaseUrl: url.toString() })
      const w = yield* hub.workspace("outage")
      const a = yield* provision(hub, w.apiKey, "a")
      const b = yield* provision(hub, w.apiKey, "b")
      const clientA = yield* HubClient.connect({ url: hub.agentUrl, transport: Msgpack.transport, token: a.token })
      const clientB = yield* HubClient.connect({ url: hub.agentUrl, transport: Msgpack.transport, token: b.token })
      yield* clientA.expose("db", "127.0.0.1", yield* echoServer)
      const listener = yield* clientB.reach("db")

      const socket = yield* Effect.acquireRelease(
        Effect.sync(() => Net.connect({ port: listener.port, host: "127.0.0.1", allowHalfOpen: true })),
        (s) => Effect.sync(() => s.destroy())
      )
      const received: Array<Buffer> = []
      socket.on("data", (c: Buffer) => received.push(c))
      const echoedBytes = () => received.reduce((n, c) => n + c.length, 0)
      const until = (check: () => boolean) =>
        Effect.gen(function*() {
          const deadline = Date.now() + 15_000
          while (!check()) {
            if (Date.now() > deadline) return yield* Effect.dieMessage("condition not met in time")
            yield* Effect.sleep("20 millis")
          }
        })
      socket.write(Buffer.alloc(1000, 1))
      yield* until(() => echoedBytes() === 1000)
      yield* waitForEvents(hub, (es) => es.find((e) => e._tag === "TunnelOpened"))

      proxy.cut()
      // The open tunnel keeps flowing without the database.
      socket.write(Buffer.alloc(500, 2))
      yield* until(() => echoedBytes() === 1500)
      // A new tunnel is refused: nothing can record it (fail closed).
      const refused = yield* Effect.promise(
        () =>
          new Promise<number>((resolve) => {
            const other = Net.connect({ port: listener.port, host: "127.0.0.1" })
            let got = 0
            other.on("data", (c: Buffer) => (got += c.length))
            other.on("error", () => {})
            other.once("connect", () => other.write("hello"))
            other.once("close", () => resolve(got))
          })
      ).pipe(Effect.timeout("20 seconds"))
      expect(refused).toBe(0)

      // The tunnel ends during the outage: its TunnelClosed goes to the spool.
      socket.end()
      yield* until(() => socket.readableEnded)
      const spoolFile = Path.join(hub.dataDir, "spool", "spool.jsonl")
      yield* until(() => Fs.existsSync(spoolFile))
      const spooled = Fs.readFileSync(spoolFile, "utf8").trim().split("\n").map((l) => JSON.parse(l))
      expect(spooled).toEqual([expect.objectContaining({ type: "TunnelClosed", expectedVersion: 1 })])
      expect(spooled[0].data).toMatchObject({ bytesUp: 1500, bytesDown: 1500, reason: "end" })

      proxy.restore()
      const closed = yield* waitForEvents(hub, (es) => {
        const found = es.filter((e) => e._tag === "TunnelClosed")
        return found.length > 0 ? found : undefined
      })
      expect(closed).toHaveLength(1)
      expect(closed[0]).toMatchObject({ bytesUp: 1500, bytesDown: 1500, reason: "end" })
      yield* until(() => !Fs.existsSync(spoolFile))
      // Once more for good measure: nothing is appended twice.
      yield* Effect.sleep("1 second")
      expect((yield* hub.events).filter((e) => e.event._tag === "TunnelClosed")).toHaveLength(1)
    }), 90_000)
})

describe("gateway shutdown", () => {
  it.scopedLive("a hub that stops records how its open tunnels and connections ended", () =>
    Effect.gen(function*() {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      const hubScope = yield* Scope.make()
      const hub = yield* Scope.extend(Hub.start({ databaseUrl: url }), hubScope)
      const w = yield* hub.workspace("stop")
      const a = yield* provision(hub, w.apiKey, "a")
      const b = yield* provision(hub, w.apiKey, "b")
      const clientA = yield* HubClient.connect({ url: hub.agentUrl, transport: Ws.transport, token: a.token })
      const clientB = yield* HubClient.connect({ url: hub.agentUrl, transport: Ws.transport, token: b.token })
      yield* clientA.expose("db", "127.0.0.1", yield* echoServer)
      const listener = yield* clientB.reach("db")
      const socket = yield* Effect.acquireRelease(
        Effect.sync(() => Net.connect({ port: listener.port, host: "127.0.0.1" })),
        (s) => Effect.sync(() => s.destroy())
      )
      socket.on("error", () => {})
      const echoed = yield* Effect.async<number>((resume) => {
        socket.once("data", (c: Buffer) => resume(Effect.succeed(c.length)))
        socket.write("ping")
      })
      expect(echoed).toBe(4)
      yield* waitForEvents(hub, (es) => es.find((e) => e._tag === "TunnelOpened"))

      yield* Scope.close(hubScope, Exit.void)
      const events = yield* Effect.flatMap(EventLog, (log) => log.readAll(0, 10_000)).pipe(
        Effect.provide(PgEventLog.layer().pipe(Layer.provide(PgClient.layer({ url: Redacted.make(url) })))),
        Effect.scoped,
        Effect.orDie
      )
      const closed = events.filter((e) => e.event._tag === "TunnelClosed").map((e) => e.event)
      expect(closed).toEqual([expect.objectContaining({ bytesUp: 4, bytesDown: 4 })])
      const disconnected = events.filter((e) => e.event._tag === "AgentDisconnected").map((e) => e.event)
      expect(disconnected.map((e: any) => e.agentId).sort()).toEqual([a.agentId, b.agentId].sort())
    }), 60_000)
})
