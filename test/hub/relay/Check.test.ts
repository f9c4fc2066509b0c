/**
 * `reach --check` through the relay over real TCP on 127.0.0.1: agent B's check is resolved like a reach and probed
 * by the exposing agent A against its own target, for every WebSocket transport.
 */
import * as Http from "node:http"
import * as Net from "node:net"
import { describe, expect, it } from "vitest"
import { Effect, Exit } from "effect"
import type { Scope } from "effect"
import * as HubClient from "../../../agent/HubClient.ts"
import { makeMemoryRelayPolicy } from "../../../core/MemoryRelayPolicy.ts"
import * as Protocol from "../../../core/Protocol.ts"
import type { Transport } from "../../../core/Transport.ts"
import * as Relay from "../../../hub/relay/Relay.ts"
import * as Msgpack from "../../../transports/Msgpack.ts"
import * as Ws from "../../../transports/Ws.ts"

const agents = [
  { token: "a".repeat(64), agentId: "agent-a", workspaceId: "w1" },
  { token: "b".repeat(64), agentId: "agent-b", workspaceId: "w1" },
  { token: "c".repeat(64), agentId: "agent-c", workspaceId: "w2" }
]

const listen = (server: Net.Server) =>
  Effect.acquireRelease(
    Effect.async<number>((resume) => {
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed((server.address() as Net.AddressInfo).port)))
    }),
    () =>
      Effect.sync(() => {
        if (server instanceof Http.Server) server.closeAllConnections()
        server.close()
      })
  )

const setup = (transport: Transport, options: Relay.RelayOptions = {}) =>
  Effect.gen(function*() {
    const memory = makeMemoryRelayPolicy(agents)
    const relay = yield* Relay.make(memory.policy, options)
    const served = yield* Relay.serve(relay)
    const a = yield* HubClient.connect({ url: served.url, transport, token: agents[0]!.token, label: "a" })
    const b = yield* HubClient.connect({ url: served.url, transport, token: agents[1]!.token, label: "b" })
    const c = yield* HubClient.connect({ url: served.url, transport, token: agents[2]!.token, label: "c" })
    return { relay, a, b, c, url: served.url }
  })

const run = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>) => Effect.runPromise(Effect.scoped(effect))

const failureCode = (exit: Exit.Exit<unknown, { readonly _tag: string }>) =>
  Exit.isFailure(exit) ? JSON.stringify(exit.cause) : "success"

describe.each([Ws.transport, Msgpack.transport])("reach --check over $name", (transport) => {
  it("returns the exposing agent's probe of an HTTP target", () =>
    run(Effect.gen(function*() {
      const { a, b } = yield* setup(transport)
      const port = yield* listen(Http.createServer((_req, res) => res.end("ok")))
      // A exposes it as "localhost": the DNS step shows A resolving A's own name.
      yield* a.expose("web", "localhost", port)
      const result = yield* b.check("web")
      expect(result.service).toBe("web")
      expect(result.host).toBe("localhost")
      expect(result.port).toBe(port)
      expect(result.dns.ok).toBe(true)
      expect(result.dns.detail).toMatch(/^localhost → /)
      expect(result.tcp.ok).toBe(true)
      expect(result.tls.ok).toBe(false)
      expect(result.http).toMatchObject({ ok: true, detail: "HTTP/1.1 200 OK" })
      expect(result.ok).toBe(true)
      expect(result.latencyMs).toBeGreaterThanOrEqual(0)
      expect(result.latencyMs).toBeLessThan(5_000)
    })), 20_000)

  it("reports a plain TCP target as ok and a target that is down as not ok", () =>
    run(Effect.gen(function*() {
      const { a, b } = yield* setup(transport)
      const sockets: Array<Net.Socket> = []
      yield* Effect.addFinalizer(() => Effect.sync(() => sockets.forEach((s) => s.destroy())))
      const port = yield* listen(Net.createServer((socket) => {
        sockets.push(socket)
        socket.on("error", () => {})
        // Like Postgres on garbage: close at the first bytes that are not its protocol.
        socket.once("data", () => socket.destroy())
      }))
      yield* a.expose("pg", "127.0.0.1", port)
      const plain = yield* b.check("pg")
      expect(plain.tcp.ok).toBe(true)
      expect(plain.tls.detail).toBe("not TLS (plain TCP service)")
      expect(plain.http.detail).toBe("not HTTP")
      expect(plain.ok).toBe(true)

      const closed = yield* Effect.promise(() =>
        new Promise<number>((resolve) => {
          const server = Net.createServer().listen(0, "127.0.0.1", () => {
            const p = (server.address() as Net.AddressInfo).port
            server.close(() => resolve(p))
          })
        })
      )
      yield* a.expose("down", "127.0.0.1", closed)
      const down = yield* b.check("down")
      expect(down.tcp.ok).toBe(false)
      expect(down.ok).toBe(false)
    })), 20_000)

  it("refuses an unknown service and another workspace's service with ServiceNotFound", () =>
    run(Effect.gen(function*() {
      const { a, b, c } = yield* setup(transport)
      const unknown = yield* Effect.exit(b.check("nope"))
      expect(failureCode(unknown)).toContain("RelayDenied")
      expect(failureCode(unknown)).toContain("ServiceNotFound")
      yield* a.expose("private", "127.0.0.1", 9)
      const other = yield* Effect.exit(c.check("private"))
      expect(failureCode(other)).toContain("ServiceNotFound")
      // The connections stay usable after a refused check.
      expect(b.connection.closed).toBe(false)
      expect(c.connection.closed).toBe(false)
    })), 20_000)

  it("fails a check the exposing agent never answers within the hub's timeout, and stays usable", () =>
    run(Effect.gen(function*() {
      const { b, url } = yield* setup(transport, { checkTimeout: "300 millis" })
      // A third agent of workspace 1 that exposes a service but ignores every Probe.
      const mute = yield* transport.dial(url)
      const acked = yield* Effect.async<void>((resume) => {
        mute.setHandler({
          message: (message) => {
            if (message._tag === "Welcome") mute.send(new Protocol.Expose({ request: 1, name: "mute", host: "127.0.0.1", port: 9 }))
            if (message._tag === "Ack") resume(Effect.void)
          },
          close: () => {}
        })
        mute.send(new Protocol.Hello({ protocol: Protocol.PROTOCOL_VERSION, token: agents[0]!.token, transport: transport.name, agentVersion: "test" }))
      }).pipe(Effect.timeout("5 seconds"), Effect.exit)
      expect(Exit.isSuccess(acked)).toBe(true)
      const started = Date.now()
      const silent = yield* Effect.exit(b.check("mute"))
      expect(failureCode(silent)).toContain("Unavailable")
      expect(failureCode(silent)).toContain("did not answer the check")
      expect(Date.now() - started).toBeLessThan(5_000)
      expect(b.connection.closed).toBe(false)
    })), 20_000)
})
