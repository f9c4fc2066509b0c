/**
 * The relay end to end in one process over real TCP on 127.0.0.1: hub, exposing agent A, reaching agent B, a
 * target server and plain `net` clients, for every transport the agent can dial (ws, msgpack, tcp).
 */
import * as Crypto from "node:crypto"
import * as Net from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { makeMemoryRelayPolicy } from "../../../core/MemoryRelayPolicy.ts"
import { STREAM_WINDOW, MAX_CHUNK } from "../../../core/Protocol.ts"
import { RelayDenied } from "../../../core/RelayPolicy.ts"
import type { RelayPolicyService } from "../../../core/RelayPolicy.ts"
import { CLOSE_CODES } from "../../../core/Transport.ts"
import type { Transport } from "../../../core/Transport.ts"
import * as HubClient from "../../../agent/HubClient.ts"
import * as Relay from "../../../hub/relay/Relay.ts"
import * as Msgpack from "../../../transports/Msgpack.ts"
import * as Tcp from "../../../transports/Tcp.ts"
import * as Ws from "../../../transports/Ws.ts"

const agents = [
  { token: "a".repeat(64), agentId: "agent-a", workspaceId: "w1" },
  { token: "b".repeat(64), agentId: "agent-b", workspaceId: "w1" },
  { token: "c".repeat(64), agentId: "agent-c", workspaceId: "w2" }
]

interface Env {
  readonly relay: Relay.RelayService
  readonly memory: ReturnType<typeof makeMemoryRelayPolicy>
  readonly a: HubClient.HubClientService
  readonly b: HubClient.HubClientService
  /** Starts a target server with `handler`, exposes it from A and reaches it from B; resolves B's local port. */
  readonly tunnel: (handler: (socket: Net.Socket) => void) => Promise<number>
  /** Runs a scoped effect in the environment's scope. */
  readonly run: <A, E>(effect: Effect.Effect<A, E, Scope.Scope>) => Promise<A>
}

let serviceCounter = 0

const targetServer = (handler: (socket: Net.Socket) => void) =>
  Effect.acquireRelease(
    Effect.async<Net.Server>((resume) => {
      const server = Net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
        socket.on("error", () => {})
        handler(socket)
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) =>
      Effect.sync(() => {
        server.close()
      })
  ).pipe(Effect.map((server) => (server.address() as Net.AddressInfo).port))

const withEnv = (
  transport: Transport,
  body: (env: Env) => Promise<void>,
  wrapPolicy: (policy: RelayPolicyService) => RelayPolicyService = (p) => p
) =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const memory = makeMemoryRelayPolicy(agents)
    const relay = yield* Relay.make(wrapPolicy(memory.policy))
    const served = yield* Relay.serve(relay)
    const a = yield* HubClient.connect({ url: served.url, transport, token: agents[0]!.token, label: "a" })
    const b = yield* HubClient.connect({ url: served.url, transport, token: agents[1]!.token, label: "b" })
    const run = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>) => Effect.runPromise(Scope.extend(effect, scope))
    const tunnel = (handler: (socket: Net.Socket) => void) =>
      run(
        Effect.gen(function*() {
          const port = yield* targetServer(handler)
          const name = `svc-${++serviceCounter}`
          yield* a.expose(name, "127.0.0.1", port)
          return (yield* b.reach(name)).port
        })
      )
    yield* Effect.promise(() => body({ relay, memory, a, b, tunnel, run }))
  }).pipe(Effect.scoped, Effect.runPromise)

const connect = (port: number) =>
  new Promise<Net.Socket>((resolve, reject) => {
    const socket = Net.connect({ port, host: "127.0.0.1", allowHalfOpen: true, noDelay: true })
    socket.once("connect", () => resolve(socket))
    socket.once("error", reject)
  })

/** Reads a socket to EOF; resolves the sha256 and length of everything read. */
const drain = (socket: Net.Socket) =>
  new Promise<{ sha: string; length: number; data: Buffer | undefined }>((resolve, reject) => {
    const hash = Crypto.createHash("sha256")
    const small: Array<Buffer> = []
    let length = 0
    socket.on("data", (chunk: Buffer) => {
      hash.update(chunk)
      length += chunk.byteLength
      if (length <= 1 << 16) small.push(chunk)
    })
    socket.once("end", () =>
      resolve({ sha: hash.digest("hex"), length, data: length <= 1 << 16 ? Buffer.concat(small) : undefined }))
    socket.once("error", reject)
  })

/** Resolves how a socket closed: the error code, or "closed". */
const closedHow = (socket: Net.Socket) =>
  new Promise<string>((resolve) => {
    let code = "closed"
    socket.on("error", (error: NodeJS.ErrnoException) => {
      code = error.code ?? "error"
    })
    socket.once("close", () => resolve(code))
  })

const sha = (data: Buffer) => Crypto.createHash("sha256").update(data).digest("hex")

const eventually = async (check: () => boolean, ms = 3_000) => {
  const until = Date.now() + ms
  while (!check()) {
    if (Date.now() > until) throw new Error("condition not met in time")
    await new Promise((r) => setTimeout(r, 10))
  }
}

const transports: ReadonlyArray<readonly [string, Transport]> = [
  ["ws", Ws.transport],
  ["msgpack", Msgpack.transport],
  ["tcp", Tcp.transport]
]

describe.each(transports)("Relay over %s", (_name, transport) => {
  it.each([1, 65_537, 1024 * 1024 + 3, 64 * 1024 * 1024])(
    "moves %i random bytes byte-exact in both directions at once",
    (size) =>
      withEnv(transport, async (env) => {
        const up = Crypto.randomBytes(size)
        const down = Crypto.randomBytes(size)
        let atTarget!: (got: Promise<{ sha: string; length: number }>) => void
        const targetGot = new Promise<Promise<{ sha: string; length: number }>>((resolve) => (atTarget = resolve))
        const port = await env.tunnel((socket) => {
          atTarget(drain(socket))
          socket.end(down)
        })
        const client = await connect(port)
        const clientGot = drain(client)
        client.end(up)
        const got = await clientGot
        const target = await (await targetGot)
        expect(got.length).toBe(size)
        expect(got.sha).toBe(sha(down))
        expect(target.length).toBe(size)
        expect(target.sha).toBe(sha(up))
        await eventually(() => env.relay.stats().streams === 0)
        const closed = env.memory.events.find((e) => e._tag === "TunnelClosed")
        expect(closed?._tag === "TunnelClosed" && closed.totals).toMatchObject({ bytesUp: size, bytesDown: size, reason: "closed" })
      }), 60_000)

  it("relays half-close: the target sees EOF and can still answer", () =>
    withEnv(transport, async (env) => {
      const port = await env.tunnel((socket) => {
        const chunks: Array<Buffer> = []
        socket.on("data", (c: Buffer) => chunks.push(c))
        socket.on("end", () => setTimeout(() => socket.end(`got:${Buffer.concat(chunks).toString()}`), 50))
      })
      const client = await connect(port)
      const got = drain(client)
      client.end("hello")
      expect((await got).data?.toString()).toBe("got:hello")
    }))

  it("keeps a client's first bytes while the hub is still authorizing the tunnel", () =>
    withEnv(
      transport,
      async (env) => {
        const port = await env.tunnel((socket) => {
          socket.once("data", (c: Buffer) => socket.end(`hi ${c.toString()}`))
        })
        const client = Net.connect({ port, host: "127.0.0.1", allowHalfOpen: true })
        client.write("PGSTARTUP")
        expect((await drain(client)).data?.toString()).toBe("hi PGSTARTUP")
      },
      (policy) => ({ ...policy, tunnelOpened: (t) => Effect.zipRight(Effect.sleep(150), policy.tunnelOpened(t)) })
    ))

  it("relays resets both ways", () =>
    withEnv(transport, async (env) => {
      let targetSocket: Net.Socket | undefined
      const port = await env.tunnel((socket) => {
        targetSocket = socket
        socket.once("data", () => socket.resetAndDestroy())
      })
      const client = await connect(port)
      const how = closedHow(client)
      client.write("x")
      expect(await how).toBe("ECONNRESET")

      const port2 = await env.tunnel((socket) => {
        targetSocket = socket
        socket.write("ready")
      })
      const client2 = await connect(port2)
      await new Promise((r) => client2.once("data", r))
      const targetHow = closedHow(targetSocket!)
      client2.resetAndDestroy()
      expect(await targetHow).toBe("ECONNRESET")
    }))

  it("closes the client promptly when the target refuses", () =>
    withEnv(transport, async (env) => {
      const closedPort = await new Promise<number>((resolve) => {
        const s = Net.createServer().listen(0, "127.0.0.1", () => {
          const p = (s.address() as Net.AddressInfo).port
          s.close(() => resolve(p))
        })
      })
      const name = "refusing"
      await env.run(env.a.expose(name, "127.0.0.1", closedPort))
      const { port } = await env.run(env.b.reach(name))
      const started = Date.now()
      const client = await connect(port)
      expect(await closedHow(client)).toBe("ECONNRESET")
      expect(Date.now() - started).toBeLessThan(1_000)
      await eventually(() =>
        env.memory.events.some((e) => e._tag === "TunnelClosed" && e.totals.reason === "ECONNREFUSED"))
    }))

  it("never connects to a target the hub is still deciding on, or refuses (the old one serves until the Ack)", () => {
    let refusedPort = 0
    return withEnv(
      transport,
      async (env) => {
        const port = await env.run(targetServer((socket) => socket.end("old target")))
        refusedPort = await env.run(targetServer((socket) => socket.end("refused target")))
        await env.run(env.a.expose("moving", "127.0.0.1", port))
        const { port: local } = await env.run(env.b.reach("moving"))
        const refused = env.run(Effect.exit(env.a.expose("moving", "127.0.0.1", refusedPort)))
        // While the hub decides on the new target, a client connects.
        await new Promise((r) => setTimeout(r, 50))
        const client = await connect(local)
        client.end()
        expect((await drain(client)).data?.toString()).toBe("old target")
        expect(Exit.isFailure(await refused)).toBe(true)
      },
      (policy) => ({
        ...policy,
        expose: (session, target) =>
          target.port === refusedPort
            ? Effect.zipRight(
              Effect.sleep(300),
              Effect.fail(new RelayDenied({ code: "Forbidden", message: "not allowed" }))
            )
            : policy.expose(session, target)
      })
    )
  })

  it("refuses the stream when the tunnel cannot be recorded (fail closed)", () =>
    withEnv(transport, async (env) => {
      let reached = 0
      const port = await env.tunnel(() => reached++)
      env.memory.setTunnelOpenedFails(true)
      const client = await connect(port)
      client.write("secret")
      expect(await closedHow(client)).toBe("ECONNRESET")
      expect(reached).toBe(0)
      expect(env.relay.stats().streams).toBe(0)
    }))

  it("refuses to reach an unknown service or another workspace's service", () =>
    withEnv(transport, async (env) => {
      const unknown = await env.run(Effect.exit(env.b.reach("nope")))
      expect(Exit.isFailure(unknown) && JSON.stringify(unknown.cause)).toContain("ServiceNotFound")
      await env.run(env.a.expose("private", "127.0.0.1", 9))
      const other = await env.run(Effect.gen(function*() {
        const relayUrl = env.a.connection.remoteAddress
        const c = yield* HubClient.connect({ url: relayUrl, transport, token: agents[2]!.token })
        return yield* Effect.exit(c.reach("private"))
      }))
      expect(Exit.isFailure(other) && JSON.stringify(other.cause)).toContain("ServiceNotFound")
    }))

  it("does not let one stuck stream stall another on the same connection", () =>
    withEnv(transport, async (env) => {
      const big = Crypto.randomBytes(16 * 1024 * 1024)
      const stuckPort = await env.tunnel((socket) => socket.end(big))
      const stuck = await connect(stuckPort)
      let stuckGot = 0
      stuck.once("data", (c: Buffer) => {
        stuckGot += c.byteLength
        stuck.pause()
      })
      await eventually(() => stuckGot > 0)

      const payload = Crypto.randomBytes(8 * 1024 * 1024)
      const port = await env.tunnel((socket) => socket.pipe(socket))
      const client = await connect(port)
      const got = drain(client)
      client.end(payload)
      const result = await got
      expect(result.sha).toBe(sha(payload))
      expect(stuck.readableLength + stuckGot).toBeLessThan(big.byteLength)
      stuck.destroy()
    }))

  it("keeps hub and agent buffers bounded behind a 1 MB/s reader", () =>
    withEnv(transport, async (env) => {
      const chunk = Crypto.randomBytes(64 * 1024)
      let stop = false
      const port = await env.tunnel((socket) => {
        const pump = () => {
          while (!stop && socket.write(chunk)) {}
          if (!stop) socket.once("drain", pump)
          else socket.destroy()
        }
        pump()
      })
      const client = await connect(port)
      let received = 0
      let hubMax = 0
      let agentMax = 0
      const sampler = setInterval(() => {
        hubMax = Math.max(hubMax, env.relay.stats().bufferedBytes)
        agentMax = Math.max(agentMax, env.b.stats().bufferedBytes)
      }, 10)
      // Read 10 KB every 10 ms: ~1 MB/s.
      client.pause()
      const reader = setInterval(() => {
        let c: Buffer | null
        let n = 0
        while (n < 10_000 && (c = client.read(Math.min(10_000 - n, client.readableLength || 10_000))) !== null) {
          n += c.byteLength
        }
        received += n
      }, 10)
      await new Promise((r) => setTimeout(r, 3_000))
      clearInterval(reader)
      clearInterval(sampler)
      stop = true
      client.destroy()
      expect(received).toBeGreaterThan(1_000_000)
      expect(received).toBeLessThan(5_000_000)
      // The hub holds no more than one window (plus a chunk in flight) for the stream; B's socket one window.
      expect(hubMax).toBeLessThanOrEqual(STREAM_WINDOW + 2 * MAX_CHUNK)
      expect(agentMax).toBeLessThanOrEqual(STREAM_WINDOW + 2 * MAX_CHUNK)
    }), 20_000)
})

describe.each(transports)("HubClient.open over %s", (_name, transport) => {
  it("relays a socket the caller accepted: early bytes, half-close and the answer", () =>
    withEnv(transport, async (env) => {
      const targetPort = await env.run(targetServer((socket) => {
        const chunks: Array<Buffer> = []
        socket.on("data", (c: Buffer) => chunks.push(c))
        socket.on("end", () => socket.end(`got:${Buffer.concat(chunks).toString()}`))
      }))
      await env.run(env.a.expose("owned", "127.0.0.1", targetPort))
      // The agent process owns this listener (default options: not half-open); the client connection is handed over.
      const server = Net.createServer((socket) => env.b.open("owned", socket))
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
      try {
        const client = await connect((server.address() as Net.AddressInfo).port)
        const got = drain(client)
        client.end("STARTUP")
        expect((await got).data?.toString()).toBe("got:STARTUP")
      } finally {
        server.close()
      }
    }))

  it("resets the socket promptly for an unknown service and after the connection closed", () =>
    withEnv(transport, async (env) => {
      const handed: Array<Net.Socket> = []
      const server = Net.createServer((socket) => handed.push(socket))
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
      const port = (server.address() as Net.AddressInfo).port
      try {
        const started = Date.now()
        const unknown = await connect(port)
        await eventually(() => handed.length === 1)
        env.b.open("nope", handed[0]!)
        expect(await closedHow(unknown)).toBe("ECONNRESET")

        const { code } = await env.run(Effect.gen(function*() {
          env.b.connection.close(1000, "bye")
          return yield* env.b.closed
        }))
        expect(code).toBe(1000)
        const late = await connect(port)
        await eventually(() => handed.length === 2)
        env.b.open("owned", handed[1]!)
        expect(await closedHow(late)).toBe("ECONNRESET")
        expect(Date.now() - started).toBeLessThan(2_000)
      } finally {
        server.close()
      }
    }))
})

describe("Relay.disconnect", () => {
  it("closes the agent's live connection with the code and reason given, records it, and leaves the others", () =>
    withEnv(Msgpack.transport, async (env) => {
      expect(env.relay.disconnect("agent-b", CLOSE_CODES.Unauthorized, "token revoked")).toBe(true)
      const info = await env.run(env.b.closed.pipe(Effect.timeout(3_000)))
      expect(info).toEqual({ code: CLOSE_CODES.Unauthorized, reason: "token revoked" })
      await eventually(() =>
        env.memory.events.some((e) =>
          e._tag === "AgentDisconnected" && e.agentId === "agent-b" && e.close.code === CLOSE_CODES.Unauthorized
        )
      )
      expect(env.relay.stats().agents).toBe(1)
      expect(env.a.connection.closed).toBe(false)
      // An agent without a live connection: nothing to close.
      expect(env.relay.disconnect("agent-b", CLOSE_CODES.Unauthorized, "token revoked")).toBe(false)
      expect(env.relay.disconnect("agent-c", CLOSE_CODES.Unauthorized, "token revoked")).toBe(false)
    }))
})

/** A TCP forwarder to `port` that can go silent (a vanished host) or cut its connections (a killed process). */
const proxy = async (port: number) => {
  const pairs: Array<readonly [Net.Socket, Net.Socket]> = []
  const server = Net.createServer((inbound) => {
    const outbound = Net.connect({ port, host: "127.0.0.1" })
    inbound.on("error", () => {})
    outbound.on("error", () => {})
    inbound.pipe(outbound)
    outbound.pipe(inbound)
    pairs.push([inbound, outbound])
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  return {
    url: `ws://127.0.0.1:${(server.address() as Net.AddressInfo).port}`,
    silence: () => {
      for (const [a, b] of pairs) {
        a.unpipe(b)
        b.unpipe(a)
        a.pause()
        b.pause()
      }
    },
    kill: () => {
      server.close()
      for (const [a, b] of pairs) {
        a.resetAndDestroy()
        b.resetAndDestroy()
      }
    },
    close: () => {
      server.close()
      for (const [a, b] of pairs) {
        a.destroy()
        b.destroy()
      }
    }
  }
}

describe("HubClient liveness", () => {
  const heartbeat = { interval: "100 millis", timeout: "300 millis" } as const
  const hubBehindProxy = <A>(body: (url: string, p: Awaited<ReturnType<typeof proxy>>) => Effect.Effect<A, unknown, Scope.Scope>) =>
    Effect.gen(function*() {
      const relay = yield* Relay.make(makeMemoryRelayPolicy(agents).policy, { heartbeat })
      const served = yield* Relay.serve(relay)
      const p = yield* Effect.acquireRelease(Effect.promise(() => proxy(served.port)), (p) => Effect.sync(p.close))
      return yield* body(p.url, p)
    }).pipe(Effect.scoped, Effect.runPromise)

  it("completes `closed` within the heartbeat timeout when the hub goes silent", () =>
    hubBehindProxy((url, p) =>
      Effect.gen(function*() {
        const client = yield* HubClient.connect({ url, transport: Msgpack.transport, token: agents[0]!.token, heartbeat })
        const started = Date.now()
        p.silence()
        const info = yield* client.closed.pipe(Effect.timeout(3_000))
        expect(info.code).toBe(4008)
        expect(Date.now() - started).toBeLessThan(300 + 2 * 100 + 200)
        expect(client.connection.closed).toBe(true)
      })
    ))

  it("completes `closed` at once when the hub process dies", () =>
    hubBehindProxy((url, p) =>
      Effect.gen(function*() {
        const client = yield* HubClient.connect({ url, transport: Msgpack.transport, token: agents[0]!.token })
        const started = Date.now()
        p.kill()
        yield* client.closed.pipe(Effect.timeout(3_000))
        expect(Date.now() - started).toBeLessThan(500)
      })
    ))

  it("fails `connect` promptly with reason Open when the hub is down", async () => {
    const port = await new Promise<number>((resolve) => {
      const s = Net.createServer().listen(0, "127.0.0.1", () => {
        const p = (s.address() as Net.AddressInfo).port
        s.close(() => resolve(p))
      })
    })
    const started = Date.now()
    const exit = await Effect.runPromiseExit(
      Effect.scoped(HubClient.connect({ url: `ws://127.0.0.1:${port}`, transport: Msgpack.transport, token: agents[0]!.token }))
    )
    expect(Date.now() - started).toBeLessThan(1_000)
    expect(Exit.isFailure(exit) && JSON.stringify(exit.cause)).toContain('"reason":"Open"')
  })
})
