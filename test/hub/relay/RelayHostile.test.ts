/**
 * The relay against hostile agents, over real TCP on 127.0.0.1: agents that send frames a stock agent never sends
 * (credits beyond what is outstanding, data beyond the windows, floods of streams and requests, a reader that stops
 * reading). Each attack must end with the attacker's connection closed or refused and every other agent unharmed.
 */
import * as Net from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Scope } from "effect"
import { WebSocket } from "ws"
import * as HubClient from "../../../agent/HubClient.ts"
import { makeMemoryRelayPolicy } from "../../../core/MemoryRelayPolicy.ts"
import * as Protocol from "../../../core/Protocol.ts"
import type { Message } from "../../../core/Protocol.ts"
import type { RelayPolicyService } from "../../../core/RelayPolicy.ts"
import { CLOSE_CODES } from "../../../core/Transport.ts"
import type { CloseInfo, Codec, Connection } from "../../../core/Transport.ts"
import * as Relay from "../../../hub/relay/Relay.ts"
import * as Msgpack from "../../../transports/Msgpack.ts"
import * as WebSocketCarrier from "../../../transports/WebSocket.ts"
import * as Ws from "../../../transports/Ws.ts"

const agents = [
  { token: "a".repeat(64), agentId: "agent-a", workspaceId: "w1" },
  { token: "b".repeat(64), agentId: "agent-b", workspaceId: "w1" },
  { token: "c".repeat(64), agentId: "agent-c", workspaceId: "w2" },
  { token: "d".repeat(64), agentId: "agent-d", workspaceId: "w1" },
  { token: "e".repeat(64), agentId: "agent-e", workspaceId: "w2" }
]

/** A hand-driven agent: every frame it sends is chosen by the test, whatever the protocol says. */
interface Hostile {
  readonly connection: Connection
  /** Messages received so far. */
  readonly received: Array<Message>
  /** Resolves with how the hub closed the connection. */
  readonly closed: Promise<CloseInfo>
  /** Resolves with the first received message matching `test`. */
  readonly next: (test: (m: Message) => boolean, ms?: number) => Promise<Message>
}

const hostile = (url: string, codec: Codec, token: string) =>
  Effect.gen(function*() {
    const connection = yield* WebSocketCarrier.dial(codec)(url)
    const received: Array<Message> = []
    const waiters: Array<{ test: (m: Message) => boolean; resolve: (m: Message) => void }> = []
    let onClose!: (info: CloseInfo) => void
    const closed = new Promise<CloseInfo>((r) => (onClose = r))
    connection.setHandler({
      message: (m) => {
        received.push(m)
        for (const w of [...waiters]) {
          if (w.test(m)) {
            waiters.splice(waiters.indexOf(w), 1)
            w.resolve(m)
          }
        }
      },
      close: onClose
    })
    const next = (test: (m: Message) => boolean, ms = 5_000) => {
      const found = received.find(test)
      if (found) return Promise.resolve(found)
      return new Promise<Message>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("no such message in time")), ms)
        waiters.push({ test, resolve: (m) => (clearTimeout(timer), resolve(m)) })
      })
    }
    connection.send(new Protocol.Hello({ protocol: 1, token, transport: codec.name, agentVersion: "hostile" }))
    yield* Effect.promise(() => next((m) => m._tag === "Welcome"))
    return { connection, received, closed, next } satisfies Hostile
  })

const listen = (handler: (socket: Net.Socket) => void) =>
  Effect.acquireRelease(
    Effect.async<Net.Server>((resume) => {
      const server = Net.createServer({ allowHalfOpen: true }, (socket) => {
        socket.on("error", () => {})
        handler(socket)
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) => Effect.sync(() => server.close())
  ).pipe(Effect.map((server) => (server.address() as Net.AddressInfo).port))

const withHub = <A>(
  body: (hub: {
    readonly url: string
    readonly relay: Relay.RelayService
    readonly memory: ReturnType<typeof makeMemoryRelayPolicy>
  }) => Effect.Effect<A, unknown, Scope.Scope>,
  options: Relay.RelayOptions = {},
  wrapPolicy: (policy: RelayPolicyService) => RelayPolicyService = (p) => p
) =>
  Effect.gen(function*() {
    const memory = makeMemoryRelayPolicy(agents)
    const relay = yield* Relay.make(wrapPolicy(memory.policy), options)
    const served = yield* Relay.serve(relay)
    return yield* body({ url: served.url, relay, memory })
  }).pipe(Effect.scoped, Effect.runPromise)

/** An honest agent exposing a target under `name`, and a client of it through another honest agent. */
const honestTunnelWorks = (url: string, name: string, exposer: HubClient.HubClientService) =>
  Effect.gen(function*() {
    const port = yield* listen((socket) => socket.pipe(socket))
    yield* exposer.expose(name, "127.0.0.1", port)
    const reacher = yield* HubClient.connect({ url, transport: Msgpack.transport, token: agents[3]!.token })
    const listener = yield* reacher.reach(name)
    return yield* Effect.promise(() => echoOnce(listener.port, "still alive"))
  })

const echoOnce = (port: number, text: string) =>
  new Promise<string>((resolve, reject) => {
    const socket = Net.connect({ port, host: "127.0.0.1" })
    const chunks: Array<Buffer> = []
    socket.on("data", (c: Buffer) => {
      chunks.push(c)
      if (Buffer.concat(chunks).toString() === text) {
        socket.destroy()
        resolve(text)
      }
    })
    socket.on("error", reject)
    socket.write(text)
  })

describe("Relay against hostile agents", () => {
  it("a JSON agent's Credit 4294967296 towards a msgpack exposer closes that agent (1002), never the hub", () =>
    withHub(({ url, relay }) =>
      Effect.gen(function*() {
        const a = yield* HubClient.connect({ url, transport: Msgpack.transport, token: agents[0]!.token })
        const port = yield* listen((socket) => socket.write("hello"))
        yield* a.expose("victim", "127.0.0.1", port)
        const b = yield* hostile(url, Ws.codec, agents[1]!.token)
        b.connection.send(Protocol.Open.make({ stream: 1, service: "victim" }))
        yield* Effect.promise(() => b.next((m) => m._tag === "Data"))
        // What the attacker sent, as raw JSON: the schema accepted any safe integer.
        ;(b.connection as unknown as { send: (m: unknown) => void }).send({ _tag: "Credit", stream: 1, bytes: 4294967296 })
        expect((yield* Effect.promise(() => b.closed)).code).toBe(CLOSE_CODES.Protocol)
        expect(a.connection.closed).toBe(false)
        expect(yield* honestTunnelWorks(url, "after-attack", a)).toBe("still alive")
        yield* Effect.promise(() => until(() => relay.stats().streams === 0))
      })
    ))

  it("a credit within the window but beyond the bytes outstanding is a violation (it would switch the window off)", () =>
    withHub(({ url }) =>
      Effect.gen(function*() {
        const a = yield* HubClient.connect({ url, transport: Msgpack.transport, token: agents[0]!.token })
        const port = yield* listen((socket) => socket.write("hello"))
        yield* a.expose("victim", "127.0.0.1", port)
        const b = yield* hostile(url, Msgpack.codec, agents[1]!.token)
        b.connection.send(Protocol.Open.make({ stream: 1, service: "victim" }))
        yield* Effect.promise(() => b.next((m) => m._tag === "Data"))
        // 5 bytes outstanding; a 4 MiB credit would let the exposer push 4 MiB more than its window.
        b.connection.send(Protocol.Credit.make({ stream: 1, bytes: Protocol.STREAM_WINDOW }))
        const info = yield* Effect.promise(() => b.closed)
        expect(info.code).toBe(CLOSE_CODES.Protocol)
        expect(info.reason).toContain("Credit beyond the bytes outstanding")
        expect(a.connection.closed).toBe(false)
      })
    ))

  it("100 streams × 4 MiB towards an exposer that stops reading: the hub holds one connection window, not 400 MiB", () =>
    withHub(({ url, relay }) =>
      Effect.gen(function*() {
        // The exposer reads its Welcome and the Ack, then stops reading its socket for good.
        const exposer = yield* Effect.promise(() => silentExposer(url, agents[0]!.token, "sink"))
        const b = yield* hostile(url, Msgpack.codec, agents[1]!.token)
        let maxBuffered = 0
        const sampler = setInterval(() => (maxBuffered = Math.max(maxBuffered, relay.stats().bufferedBytes)), 5)
        const chunk = Buffer.alloc(Protocol.MAX_CHUNK, 7)
        let sent = 0
        for (let stream = 1; stream < 200 && !b.connection.closed; stream += 2) {
          b.connection.send(Protocol.Open.make({ stream, service: "sink" }))
          for (let i = 0; i < Protocol.STREAM_WINDOW / Protocol.MAX_CHUNK && !b.connection.closed; i++) {
            b.connection.sendData(stream, chunk)
            sent += chunk.byteLength
          }
          // Let the hub read what was written so far, as a real sender would be paced by TCP.
          yield* Effect.promise(() => new Promise((r) => setTimeout(r, 5)))
        }
        const info = yield* Effect.promise(() => b.closed)
        clearInterval(sampler)
        expect(info.code).toBe(CLOSE_CODES.Protocol)
        expect(info.reason).toContain("connection window exceeded")
        expect(sent).toBeLessThan(100 * Protocol.STREAM_WINDOW)
        // Everything the hub held was within the attacker's connection window (plus one frame in flight).
        expect(maxBuffered).toBeLessThanOrEqual(Protocol.CONNECTION_WINDOW + 2 * Protocol.MAX_CHUNK)
        exposer.terminate()
        yield* Effect.promise(() => until(() => relay.stats().bufferedBytes === 0 && relay.stats().streams === 0))
      })
    ), 30_000)

  it("a connection that stops reading while others send to it is closed once its buffer passes the cap (4010)", () =>
    withHub(
      ({ url, relay, memory }) =>
        Effect.gen(function*() {
          const exposer = yield* Effect.promise(() => silentExposer(url, agents[0]!.token, "sink"))
          const senders = [yield* hostile(url, Msgpack.codec, agents[1]!.token), yield* hostile(url, Msgpack.codec, agents[3]!.token)]
          const chunk = Buffer.alloc(Protocol.MAX_CHUNK, 7)
          for (const sender of senders) {
            for (let stream = 1; stream <= 7; stream += 2) {
              sender.connection.send(Protocol.Open.make({ stream, service: "sink" }))
              for (let i = 0; i < Protocol.STREAM_WINDOW / Protocol.MAX_CHUNK; i++) sender.connection.sendData(stream, chunk)
            }
          }
          // The exposer reads nothing, so it never sees the close: the hub's record says how it ended.
          yield* Effect.promise(() =>
            until(() =>
              memory.events.some((e) =>
                e._tag === "AgentDisconnected" && e.agentId === "agent-a" && e.close.code === CLOSE_CODES.SlowConsumer
              )
            )
          )
          exposer.terminate()
          yield* Effect.promise(() => until(() => relay.stats().bufferedBytes === 0))
          // The senders were within every window: they stay connected.
          expect(senders.every((s) => !s.connection.closed)).toBe(true)
        }),
      { maxLinkBufferedBytes: 4 * 1024 * 1024 }
    ), 30_000)

  it("streams whose reader never credits do not freeze the exposer's other streams (4 stuck streams of 4 MiB)", () =>
    withHub(({ url }) =>
      Effect.gen(function*() {
        const a = yield* HubClient.connect({ url, transport: Msgpack.transport, token: agents[0]!.token })
        const chunk = Buffer.alloc(Protocol.MAX_CHUNK, 3)
        const firehose = (socket: Net.Socket) => {
          const pump = () => {
            while (!socket.destroyed && socket.write(chunk)) {}
            if (!socket.destroyed) socket.once("drain", pump)
          }
          pump()
        }
        yield* a.expose("fire", "127.0.0.1", yield* listen(firehose))
        const b = yield* hostile(url, Msgpack.codec, agents[1]!.token)
        for (const stream of [1, 3, 5, 7, 9, 11]) b.connection.send(Protocol.Open.make({ stream, service: "fire" }))
        // B reads every frame and credits none: each stream stops at its window, all of it delivered to B.
        yield* Effect.promise(() =>
          until(() => {
            let got = 0
            for (const m of b.received) if (m._tag === "Data") got += m.payload.byteLength
            return got === 6 * Protocol.STREAM_WINDOW
          }, 10_000)
        )
        const d = yield* HubClient.connect({ url, transport: Msgpack.transport, token: agents[3]!.token })
        yield* d.expose("echo-d", "127.0.0.1", yield* listen((socket) => socket.pipe(socket)))
        yield* a.expose("echo-a", "127.0.0.1", yield* listen((socket) => socket.pipe(socket)))
        const intoA = yield* d.reach("echo-a")
        expect(yield* Effect.promise(() => echoOnce(intoA.port, "into a"))).toBe("into a")
        const fromA = yield* a.reach("echo-d")
        expect(yield* Effect.promise(() => echoOnce(fromA.port, "from a"))).toBe("from a")
        expect(b.connection.closed).toBe(false)
      })
    ), 30_000)

  it("a reader that stops reading is closed once its buffer stalls (4010); its senders keep their connections", () =>
    withHub(
      ({ url, relay, memory }) =>
        Effect.gen(function*() {
          const { exposer, b } = yield* flood(url)
          yield* Effect.promise(() => until(() => closedFor(memory, "agent-a", CLOSE_CODES.SlowConsumer), 10_000))
          exposer.terminate()
          yield* Effect.promise(() => until(() => relay.stats().bufferedBytes === 0 && relay.stats().streams === 0))
          // B's bytes came back to it with the stream's Reset: it can send a full window again.
          expect(b.received.some((m) => m._tag === "Window")).toBe(true)
          expect(b.connection.closed).toBe(false)
        }),
      { stallTimeout: "500 millis" }
    ), 30_000)

  it("frames without bytes are accepted once: a second End, an Opened from the opener, a Credit before data, data after End", () =>
    withHub(({ url }) =>
      Effect.gen(function*() {
        const a = yield* HubClient.connect({ url, transport: Msgpack.transport, token: agents[0]!.token })
        yield* a.expose("echo", "127.0.0.1", yield* listen((socket) => socket.pipe(socket)))
        const attempts: ReadonlyArray<ReadonlyArray<Message>> = [
          [Protocol.End.make({ stream: 1 }), Protocol.End.make({ stream: 1 })],
          [Protocol.Opened.make({ stream: 1 })],
          [Protocol.Credit.make({ stream: 1, bytes: 1 })],
          [Protocol.End.make({ stream: 1 }), Protocol.Data.make({ stream: 1, payload: new Uint8Array(3) })]
        ]
        for (const frames of attempts) {
          const b = yield* hostile(url, Msgpack.codec, agents[1]!.token)
          b.connection.send(Protocol.Open.make({ stream: 1, service: "echo" }))
          for (const frame of frames) b.connection.send(frame)
          expect((yield* Effect.promise(() => b.closed)).code).toBe(CLOSE_CODES.Protocol)
        }
        // And after the stream opened: End twice.
        const b = yield* hostile(url, Msgpack.codec, agents[1]!.token)
        b.connection.send(Protocol.Open.make({ stream: 1, service: "echo" }))
        yield* Effect.promise(() => b.next((m) => m._tag === "Opened"))
        b.connection.send(Protocol.End.make({ stream: 1 }))
        b.connection.send(Protocol.End.make({ stream: 1 }))
        const info = yield* Effect.promise(() => b.closed)
        expect(info.code).toBe(CLOSE_CODES.Protocol)
        expect(info.reason).toContain("End sent twice")
        expect(a.connection.closed).toBe(false)
      })
    ))

  it("past the hub-wide cap on buffered bytes, the connection holding most is closed (4010); its senders stay", () =>
    withHub(
      ({ url, relay, memory }) =>
        Effect.gen(function*() {
          const { exposer, b } = yield* flood(url)
          yield* Effect.promise(() => until(() => closedFor(memory, "agent-a", CLOSE_CODES.SlowConsumer, "hub's buffers are full"), 10_000))
          exposer.terminate()
          yield* Effect.promise(() => until(() => relay.stats().bufferedBytes === 0))
          expect(b.connection.closed).toBe(false)
        }),
      // Neither the per-connection cap nor the stall rule may fire first: only the hub-wide cap is in play.
      { maxBufferedBytes: 2 * 1024 * 1024, maxLinkBufferedBytes: 1024 * 1024 * 1024, stallTimeout: "60 seconds" }
    ), 30_000)

  it("caps streams: per reaching connection, per exposer, and per pair, so one reacher cannot take an exposer's slots", () =>
    withHub(
      ({ url, relay, memory }) =>
        Effect.gen(function*() {
          const a = yield* HubClient.connect({ url, transport: Msgpack.transport, token: agents[0]!.token })
          yield* a.expose("held", "127.0.0.1", yield* listen(() => {}))
          const c = yield* HubClient.connect({ url, transport: Msgpack.transport, token: agents[3]!.token })
          yield* c.expose("held-c", "127.0.0.1", yield* listen(() => {}))
          const b = yield* hostile(url, Msgpack.codec, agents[1]!.token)
          const errors = () => b.received.flatMap((m) => (m._tag === "Error" ? [m.code] : []))
          // Half of an exposer's slots at most go to one reacher: 25 of 30 open, 5 are refused.
          for (let stream = 1; stream <= 2 * 30; stream += 2) b.connection.send(Protocol.Open.make({ stream, service: "held" }))
          yield* Effect.promise(() => until(() => errors().length === 5))
          expect(errors()).toEqual(Array(5).fill("Unavailable"))
          // The reacher's own cap: 25 more fit, the 5 beyond are refused at once and recorded.
          for (let stream = 61; stream <= 60 + 2 * 30; stream += 2) b.connection.send(Protocol.Open.make({ stream, service: "held-c" }))
          yield* Effect.promise(() => until(() => errors().length === 10))
          expect(errors().slice(5)).toEqual(Array(5).fill("TooManyStreams"))
          yield* Effect.promise(() => until(() => relay.stats().streams === 50))
          expect(memory.events.filter((e) => e._tag === "Refused" && e.reason === "too_many_streams")).toHaveLength(5)
          expect(b.connection.closed).toBe(false)
          // The exposer still reaches out, and another agent still reaches it.
          yield* c.expose("echo-c", "127.0.0.1", yield* listen((socket) => socket.pipe(socket)))
          const out = yield* a.reach("echo-c")
          expect(yield* Effect.promise(() => echoOnce(out.port, "a reaches out"))).toBe("a reaches out")
          yield* a.expose("echo-a", "127.0.0.1", yield* listen((socket) => socket.pipe(socket)))
          const into = yield* c.reach("echo-a")
          expect(yield* Effect.promise(() => echoOnce(into.port, "c reaches a"))).toBe("c reaches a")
        }),
      { maxStreams: 50 }
    ))

  it("5,000 Opens for a missing name: bounded policy work, refusals rate-limited and recorded, others unharmed", () => {
    let running = 0
    let maxRunning = 0
    return withHub(
      ({ url, memory }) =>
        Effect.gen(function*() {
          const b = yield* hostile(url, Msgpack.codec, agents[1]!.token)
          for (let i = 0; i < 5_000; i++) b.connection.send(Protocol.Open.make({ stream: 2 * i + 1, service: `nope-${i}` }))
          // Another workspace's agents open a tunnel meanwhile.
          const c = yield* HubClient.connect({ url, transport: Msgpack.transport, token: agents[2]!.token })
          const port = yield* listen((socket) => socket.pipe(socket))
          yield* c.expose("other", "127.0.0.1", port)
          const e = yield* HubClient.connect({ url, transport: Msgpack.transport, token: agents[4]!.token })
          const started = Date.now()
          const listener = yield* e.reach("other")
          expect(yield* Effect.promise(() => echoOnce(listener.port, "unharmed"))).toBe("unharmed")
          expect(Date.now() - started).toBeLessThan(2_000)
          yield* Effect.promise(() => until(() => b.received.filter((m) => m._tag === "Error").length === 5_000, 20_000))
          const codes = new Map<string, number>()
          for (const m of b.received) if (m._tag === "Error") codes.set(m.code, (codes.get(m.code) ?? 0) + 1)
          expect(codes.get("RateLimited")).toBeGreaterThan(4_000)
          expect((codes.get("RateLimited") ?? 0) + (codes.get("ServiceNotFound") ?? 0)).toBe(5_000)
          expect(memory.events.filter((ev) => ev._tag === "Refused" && ev.reason === "rate_limited")).toHaveLength(
            codes.get("RateLimited")!
          )
          expect(maxRunning).toBeLessThanOrEqual(4)
          expect(b.connection.closed).toBe(false)
        }),
      { maxDecisions: 4, openRate: { perSecond: 100, burst: 200 } },
      (policy) => ({
        ...policy,
        resolveReach: (session, name) =>
          session.agentId !== "agent-b"
            ? policy.resolveReach(session, name)
            : Effect.acquireUseRelease(
              Effect.sync(() => (running++, maxRunning = Math.max(maxRunning, running))),
              () => Effect.zipRight(Effect.sleep(2), policy.resolveReach(session, name)),
              () => Effect.sync(() => running--)
            )
      })
    )
  }, 30_000)

  it("a policy that throws while handling one agent's frame closes that agent (1011), not the hub", () =>
    withHub(
      ({ url }) =>
        Effect.gen(function*() {
          const a = yield* HubClient.connect({ url, transport: Msgpack.transport, token: agents[0]!.token })
          const b = yield* hostile(url, Msgpack.codec, agents[1]!.token)
          b.connection.send(Protocol.Expose.make({ request: 1, name: "boom", host: "127.0.0.1", port: 9 }))
          expect((yield* Effect.promise(() => b.closed)).code).toBe(CLOSE_CODES.Internal)
          expect(yield* honestTunnelWorks(url, "after-bug", a)).toBe("still alive")
        }),
      {},
      (policy) => ({
        ...policy,
        expose: (session, target) => {
          if (target.name === "boom") throw new Error("a bug in the policy")
          return policy.expose(session, target)
        }
      })
    ))
})

const until = async (check: () => boolean, ms = 5_000) => {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error("condition not met in time")
    await new Promise((r) => setTimeout(r, 10))
  }
}

/**
 * A silent exposer of "sink" (agent A) and a sender (agent B) that pushes 12 MiB at it over three streams, within
 * every window: more than the kernel's socket buffers take, so the hub holds the rest.
 */
const flood = (url: string) =>
  Effect.gen(function*() {
    const exposer = yield* Effect.promise(() => silentExposer(url, agents[0]!.token, "sink"))
    const b = yield* hostile(url, Msgpack.codec, agents[1]!.token)
    const chunk = Buffer.alloc(Protocol.MAX_CHUNK, 7)
    for (const stream of [1, 3, 5]) {
      b.connection.send(Protocol.Open.make({ stream, service: "sink" }))
      for (let i = 0; i < Protocol.STREAM_WINDOW / Protocol.MAX_CHUNK; i++) b.connection.sendData(stream, chunk)
    }
    return { exposer, b }
  })

/** Whether the relay recorded `agentId`'s disconnection with close code `code` and a reason containing `reason`. */
const closedFor = (memory: ReturnType<typeof makeMemoryRelayPolicy>, agentId: string, code: number, reason = "") =>
  memory.events.some((e) =>
    e._tag === "AgentDisconnected" && e.agentId === agentId && e.close.code === code && e.close.reason.includes(reason)
  )

/** An exposer that answers its Welcome with an Expose of `name`, then never reads its socket again. */
const silentExposer = (url: string, token: string, name: string) =>
  new Promise<WebSocket>((resolve, reject) => {
    const ws = new WebSocket(url, [Msgpack.codec.subprotocol], { perMessageDeflate: false })
    ws.on("error", reject)
    ws.on("open", () => {
      ws.send(Msgpack.codec.encode(new Protocol.Hello({ protocol: 1, token, transport: "msgpack", agentVersion: "x" })))
    })
    ws.on("message", (data: Buffer) => {
      const message = Msgpack.codec.decode(data)
      if (message._tag === "Welcome") {
        ws.send(Msgpack.codec.encode(new Protocol.Expose({ request: 1, name, host: "127.0.0.1", port: 9 })))
      }
      if (message._tag === "Ack") {
        ;(ws as unknown as { _socket: Net.Socket })._socket.pause()
        resolve(ws)
      }
    })
  })
