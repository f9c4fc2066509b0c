/**
 * A hub and agents one build apart, over real TCP in one process: protocol revisions are negotiated in Hello/Welcome,
 * and batch frames (revision 1) flow only between peers that both speak them. The older build is played exactly: its
 * msgpack codec has no batch support (a batch frame is an unknown frame type, which closes the connection), and it
 * sends no revision (a hub: in Welcome; an agent: in Hello).
 */
import * as Net from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as HubClient from "../../../agent/HubClient.ts"
import { makeMemoryRelayPolicy } from "../../../core/MemoryRelayPolicy.ts"
import { BATCH_REVISION, PROTOCOL_REVISION } from "../../../core/Protocol.ts"
import type { Codec, Transport } from "../../../core/Transport.ts"
import * as Relay from "../../../hub/relay/Relay.ts"
import * as Msgpack from "../../../transports/Msgpack.ts"
import { dial } from "../../../transports/WebSocket.ts"

const agents = [
  { token: "a".repeat(64), agentId: "agent-a", workspaceId: "w1" },
  { token: "b".repeat(64), agentId: "agent-b", workspaceId: "w1" }
]

/** A codec that counts the batch frames it is handed, as a build of `old` or of today would read them. */
const counting = (old: boolean) => {
  const seen = { batches: 0 }
  const { batch, unbatch, ...before } = Msgpack.codec
  const decode: Codec["decode"] = (frame) => {
    if (typeof frame !== "string" && frame[0] === 0x03) seen.batches++
    return Msgpack.codec.decode(frame)
  }
  const codec: Codec = old ? { ...before, decode } : {
    ...before,
    decode,
    batch: batch!,
    unbatch: (frame) => {
      const parts = unbatch!(frame)
      if (parts) seen.batches++
      return parts
    }
  }
  const transport: Transport = { name: "msgpack", dial: dial(codec) }
  return { codec, transport, seen }
}

/** An echo target. */
const echoServer = Effect.acquireRelease(
  Effect.async<Net.Server>((resume) => {
    const server = Net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
      socket.on("error", () => {})
      socket.pipe(socket)
    })
    server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
  }),
  (server) => Effect.sync(() => void server.close())
).pipe(Effect.map((server) => (server.address() as Net.AddressInfo).port))

/**
 * `streams` clients at once through the tunnel, each sending `rounds` small requests and waiting for each echo: the
 * many small frames of one turn that batches are for. Resolves the bytes echoed in all.
 */
const requestReply = (port: number, streams: number, rounds: number) =>
  Effect.promise(() =>
    Promise.all(
      Array.from({ length: streams }, (_, i) =>
        new Promise<number>((resolve, reject) => {
          const socket = Net.connect({ port, host: "127.0.0.1", noDelay: true })
          const message = Buffer.alloc(48, 0x61 + (i % 26))
          let left = rounds
          let pending = message.byteLength
          let echoed = 0
          socket.on("error", reject)
          socket.on("data", (chunk: Buffer) => {
            if (!chunk.equals(message.subarray(0, chunk.byteLength))) reject(new Error(`stream ${i}: wrong bytes`))
            echoed += chunk.byteLength
            pending -= chunk.byteLength
            if (pending > 0) return
            if (--left === 0) return socket.end(() => resolve(echoed))
            pending = message.byteLength
            socket.write(message)
          })
          socket.once("connect", () => socket.write(message))
        })
      )
    )
  ).pipe(Effect.map((counts) => counts.reduce((a, b) => a + b, 0)), Effect.timeout("60 seconds"))

/** A hub of `hub` build and agents A (exposing the echo target) and B (reaching it) of `agent` build. */
const world = (hub: "old" | "new", agent: "old" | "new") =>
  Effect.gen(function*() {
    const hubCodec = counting(hub === "old")
    const agentA = counting(agent === "old")
    const agentB = counting(agent === "old")
    const memory = makeMemoryRelayPolicy(agents)
    const relay = yield* Relay.make(memory.policy, hub === "old" ? { revision: 0 } : {})
    const served = yield* Relay.serve(relay, { codecs: [hubCodec.codec] })
    const revision = agent === "old" ? { revision: 0 } : {}
    const a = yield* HubClient.connect({ url: served.url, transport: agentA.transport, token: agents[0]!.token, ...revision })
    const b = yield* HubClient.connect({ url: served.url, transport: agentB.transport, token: agents[1]!.token, ...revision })
    yield* a.expose("echo", "127.0.0.1", yield* echoServer)
    const port = (yield* b.reach("echo")).port
    return { a, b, port, seen: { hub: hubCodec.seen, a: agentA.seen, b: agentB.seen } }
  })

describe("Relay across protocol revisions", () => {
  it.live("today's hub and agents negotiate batch frames and carry 64 streams of small requests in them", () =>
    Effect.gen(function*() {
      const w = yield* world("new", "new")
      expect(w.a.welcome.revision).toBe(PROTOCOL_REVISION)
      expect(PROTOCOL_REVISION).toBeGreaterThanOrEqual(BATCH_REVISION)
      expect(yield* requestReply(w.port, 64, 20)).toBe(64 * 20 * 48)
      // The 64 requests of a round reach the hub together, in one read: it forwards them to A in batches. (B sends
      // each client's request from that socket's own callback, so B's own frames mostly leave one by one.)
      expect(w.seen.a.batches + w.seen.b.batches).toBeGreaterThan(0)
      expect(w.a.connection.closed || w.b.connection.closed).toBe(false)
    }).pipe(Effect.scoped), 90_000)

  it.live("today's hub with agents of the build before: revision 0, no batch frame towards them, traffic intact", () =>
    Effect.gen(function*() {
      const w = yield* world("new", "old")
      expect(w.a.welcome.revision).toBe(0)
      expect(yield* requestReply(w.port, 64, 20)).toBe(64 * 20 * 48)
      expect(w.seen).toEqual({ hub: { batches: 0 }, a: { batches: 0 }, b: { batches: 0 } })
      expect(w.a.connection.closed || w.b.connection.closed).toBe(false)
    }).pipe(Effect.scoped), 90_000)

  it.live("today's agents with a hub of the build before: no revision in Welcome, no batch frame sent, traffic intact", () =>
    Effect.gen(function*() {
      const w = yield* world("old", "new")
      expect(w.a.welcome.revision).toBeUndefined()
      expect(yield* requestReply(w.port, 64, 20)).toBe(64 * 20 * 48)
      expect(w.seen).toEqual({ hub: { batches: 0 }, a: { batches: 0 }, b: { batches: 0 } })
      expect(w.a.connection.closed || w.b.connection.closed).toBe(false)
    }).pipe(Effect.scoped), 90_000)
})
