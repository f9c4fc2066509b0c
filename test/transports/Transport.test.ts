/**
 * The transport contract, run against every plugin (ws, msgpack, tcp) and the in-memory pair: message round trips,
 * payload sizes, the frame cap, garbled frames, close codes and heartbeat timeouts.
 */
import * as Crypto from "node:crypto"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import * as Net from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, TestClock } from "effect"
import type { Scope } from "effect"
import { WebSocket } from "ws"
import * as P from "../../core/Protocol.ts"
import { CLOSE_CODES, TransportError } from "../../core/Transport.ts"
import type { CloseInfo, Codec, Connection } from "../../core/Transport.ts"
import * as Heartbeat from "../../transports/Heartbeat.ts"
import * as Memory from "../../transports/Memory.ts"
import * as Msgpack from "../../transports/Msgpack.ts"
import * as Tcp from "../../transports/Tcp.ts"
import * as TcpCarrier from "../../transports/TcpCarrier.ts"
import * as WebSocketCarrier from "../../transports/WebSocket.ts"
import * as Ws from "../../transports/Ws.ts"
import { everyMessage } from "../core/Protocol.test.ts"

/** What the suite needs from a plugin. */
interface Harness {
  /**
   * A connected client; the server end echoes every message, closes with 4001 on `Hello{token:"deny"}` and
   * goes silent after `Hello{token:"silent"}`.
   */
  readonly client: Effect.Effect<Connection, TransportError, Scope.Scope>
  /** A raw frame writer to a fresh server end, with its close code when the server drops it. */
  readonly raw: Effect.Effect<RawClient, never, Scope.Scope>
  /** Close infos seen by server ends, in order. */
  readonly serverCloses: Array<CloseInfo>
  readonly codec: Codec
}

interface RawClient {
  /** Sends a frame; resolves "echo" if the server answered, or the close code if it closed the connection. */
  readonly send: (frame: Uint8Array | string) => Promise<"echo" | number>
}

const echo = (serverCloses: Array<CloseInfo>) => (connection: Connection) => {
  let silent = false
  connection.setHandler({
    message: (message) => {
      if (silent) return
      if (message._tag === "Hello" && message.token === "silent") {
        silent = true
        return
      }
      if (message._tag === "Hello" && message.token === "deny") {
        return connection.close(CLOSE_CODES.Unauthorized, "Unauthorized")
      }
      if (message._tag === "Hello" && message.token === "throw") throw new Error("handler bug")
      if (message._tag === "Data") return connection.sendData(message.stream, message.payload)
      connection.send(message)
    },
    close: (info) => serverCloses.push(info)
  })
}

const wsHarness = (codec: Codec): Effect.Effect<Harness, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const serverCloses: Array<CloseInfo> = []
    const served = yield* WebSocketCarrier.serve({ codecs: [codec] }, echo(serverCloses))
    const raw = Effect.acquireRelease(
      Effect.promise(
        () =>
          new Promise<WebSocket>((resolve, reject) => {
            const ws = new WebSocket(served.url, [codec.subprotocol], { perMessageDeflate: false })
            ws.once("open", () => resolve(ws))
            ws.once("error", reject)
          })
      ),
      (ws) => Effect.sync(() => ws.terminate())
    ).pipe(
      Effect.map((initial): RawClient => {
        let ws = initial
        return {
          send: async (frame) => {
            if (ws.readyState !== WebSocket.OPEN) {
              ws = await new Promise<WebSocket>((resolve, reject) => {
                const next = new WebSocket(served.url, [codec.subprotocol], { perMessageDeflate: false })
                next.once("open", () => resolve(next))
                next.once("error", reject)
              })
            }
            const current = ws
            return new Promise((resolve) => {
              const timer = setTimeout(() => resolve(-1), 5_000)
              const done = (v: "echo" | number) => {
                clearTimeout(timer)
                current.off("message", onMessage)
                current.off("close", onClose)
                resolve(v)
              }
              const onMessage = () => done("echo")
              const onClose = (code: number) => done(code)
              current.on("message", onMessage)
              current.on("close", onClose)
              current.on("error", () => {})
              current.send(frame, { binary: typeof frame !== "string" })
            })
          }
        }
      })
    )
    return { client: codec === Ws.codec ? Ws.transport.dial(served.url) : Msgpack.transport.dial(served.url), raw, serverCloses, codec }
  })

const memoryHarness: Effect.Effect<Harness, never, Scope.Scope> = Effect.sync(() => {
  const serverCloses: Array<CloseInfo> = []
  const transport = Memory.makeTransport(echo(serverCloses))
  const raw = Effect.sync((): RawClient => {
    let pair = Memory.makePair()
    return {
      send: (frame) => {
        if (pair[0].closed) pair = Memory.makePair()
        const [client, server] = pair
        echo(serverCloses)(server)
        return new Promise((resolve) => {
          client.setHandler({ message: () => resolve("echo"), close: (info) => resolve(info.code) })
          client.sendFrame(frame)
        })
      }
    }
  })
  return { client: transport.dial("memory://hub"), raw, serverCloses, codec: Msgpack.codec }
})

/** The `tcp` plugin against an HTTP server that upgrades every request to it. */
const tcpHarness: Effect.Effect<Harness, TransportError, Scope.Scope> = Effect.gen(function*() {
  const serverCloses: Array<CloseInfo> = []
  const server = Http.createServer((_req, res) => res.writeHead(426).end())
  server.on("upgrade", (req, socket, head) =>
    TcpCarrier.isUpgrade(req)
      ? TcpCarrier.acceptUpgrade(socket, head, Msgpack.codec, "127.0.0.1:0", echo(serverCloses))
      : socket.destroy())
  yield* Effect.acquireRelease(
    Effect.promise(() => new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()))),
    () => Effect.sync(() => (server.closeAllConnections(), server.close()))
  )
  const port = (server.address() as AddressInfo).port
  const url = `ws://127.0.0.1:${port}/v1/agent`
  /** A raw client: upgrades by hand, writes one length-prefixed frame per send, reads back a frame or a close frame. */
  const raw = Effect.acquireRelease(
    Effect.sync(() => ({ socket: undefined as Net.Socket | undefined })),
    (state) => Effect.sync(() => state.socket?.destroy())
  ).pipe(
    Effect.map((state): RawClient => {
      let inbox = Buffer.alloc(0)
      let listener: (() => void) | undefined
      let ended = false
      let current: Net.Socket | undefined
      const open = () =>
        new Promise<Net.Socket>((resolve, reject) => {
          const socket = Net.connect({ port, host: "127.0.0.1" })
          current = socket
          inbox = Buffer.alloc(0)
          ended = false
          let upgraded = false
          socket.on("error", () => {})
          socket.once("error", reject)
          socket.write(`GET /v1/agent HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: ${TcpCarrier.UPGRADE}\r\n\r\n`)
          // Events of a connection given up on (closed by the server) no longer count.
          socket.on("data", (chunk: Buffer) => {
            if (socket !== current) return
            inbox = Buffer.concat([inbox, chunk])
            if (!upgraded) {
              const end = inbox.indexOf("\r\n\r\n")
              if (end < 0) return
              inbox = inbox.subarray(end + 4)
              upgraded = true
              resolve(socket)
            }
            listener?.()
          })
          socket.on("close", () => {
            if (socket !== current) return
            ended = true
            listener?.()
          })
        })
      return {
        send: async (frame) => {
          if (!state.socket || ended || state.socket.destroyed) {
            state.socket?.destroy()
            state.socket = await open()
          }
          const body = typeof frame === "string" ? Buffer.from(frame) : Buffer.from(frame)
          const prefix = Buffer.alloc(4)
          prefix.writeUInt32BE(body.byteLength)
          state.socket.write(Buffer.concat([prefix, body]))
          return new Promise((resolve) => {
            const timer = setTimeout(() => done(-1), 5_000)
            const done = (v: "echo" | number) => {
              clearTimeout(timer)
              listener = undefined
              resolve(v)
            }
            listener = () => {
              if (inbox.byteLength >= 6) {
                const prefix = inbox.readUInt32BE(0)
                const length = prefix & 0x7fff_ffff
                if (inbox.byteLength < 4 + length) return
                // A close frame has the top bit of its length set, and its code first.
                const code = prefix >= 0x8000_0000 ? inbox.readUInt16BE(4) : undefined
                inbox = inbox.subarray(4 + length)
                // After a close frame the next send needs a fresh connection, as a WebSocket's CLOSING state says.
                if (code !== undefined) ended = true
                return done(code ?? "echo")
              }
              if (ended) done(1006)
            }
            listener()
          })
        }
      }
    })
  )
  return { client: Tcp.transport.dial(url), raw, serverCloses, codec: Msgpack.codec }
})

/** Receives messages from a connection into a queue the test can await. */
const inbox = (connection: Connection) => {
  const queue: Array<P.Message> = []
  const waiting: Array<() => void> = []
  let closed: CloseInfo | undefined
  connection.setHandler({
    message: (m) => {
      queue.push(m)
      waiting.splice(0).forEach((w) => w())
    },
    close: (info) => {
      closed = info
      waiting.splice(0).forEach((w) => w())
    }
  })
  const next = (): Promise<P.Message> =>
    queue.length > 0
      ? Promise.resolve(queue.shift()!)
      : closed
      ? Promise.reject(new Error(`closed ${closed.code}`))
      : new Promise<void>((r) => waiting.push(r)).then(next)
  const closedInfo = (): Promise<CloseInfo> =>
    closed ? Promise.resolve(closed) : new Promise<void>((r) => waiting.push(r)).then(closedInfo)
  return { next, closedInfo }
}

const garble = (frames: ReadonlyArray<Uint8Array | string>, i: number, binary: boolean): Uint8Array | string => {
  const rand = (n: number) => Crypto.randomInt(n)
  const base = frames[i % frames.length]!
  const bytes = Buffer.from(typeof base === "string" ? Buffer.from(base) : base)
  let out: Buffer
  switch (i % 4) {
    case 0:
      out = Crypto.randomBytes(rand(64) + 1)
      break
    case 1: {
      out = Buffer.from(bytes)
      for (let k = 0; k < 1 + rand(4); k++) out[rand(out.length)] = rand(256)
      break
    }
    case 2:
      out = bytes.subarray(0, rand(bytes.length))
      break
    default:
      out = Buffer.concat([bytes, Crypto.randomBytes(rand(16) + 1)])
  }
  return binary ? out : out.toString("latin1")
}

const harnesses: ReadonlyArray<readonly [string, Effect.Effect<Harness, TransportError, Scope.Scope>]> = [
  ["ws", wsHarness(Ws.codec)],
  ["msgpack", wsHarness(Msgpack.codec)],
  ["tcp", tcpHarness],
  ["memory", memoryHarness]
]

describe.each(harnesses)("Transport contract: %s", (_name, harness) => {
  it.scopedLive("round-trips every message", () =>
    Effect.gen(function*() {
      const h = yield* harness
      const connection = yield* h.client
      const box = inbox(connection)
      for (const message of everyMessage) {
        connection.send(message)
        const back = yield* Effect.promise(() => box.next())
        expect(back._tag).toBe(message._tag)
        if (back._tag === "Data" && message._tag === "Data") {
          expect(Buffer.from(back.payload)).toEqual(Buffer.from(message.payload))
          expect(back.stream).toBe(message.stream)
        } else {
          expect(back).toEqual(message)
        }
      }
    }))

  it.scopedLive("carries payloads from 1 byte to 8 MiB (chunked) intact", () =>
    Effect.gen(function*() {
      const h = yield* harness
      const connection = yield* h.client
      const box = inbox(connection)
      for (const size of [1, 1000, P.MAX_CHUNK, 8 * 1024 * 1024]) {
        const payload = Crypto.randomBytes(size)
        const chunks = Math.ceil(size / P.MAX_CHUNK)
        for (let i = 0; i < chunks; i++) connection.sendData(3, payload.subarray(i * P.MAX_CHUNK, (i + 1) * P.MAX_CHUNK))
        const got: Array<Buffer> = []
        for (let i = 0; i < chunks; i++) {
          const m = yield* Effect.promise(() => box.next())
          if (m._tag !== "Data") throw new Error(`expected Data, got ${m._tag}`)
          got.push(Buffer.from(m.payload))
        }
        const all = Buffer.concat(got)
        expect(all.byteLength).toBe(size)
        expect(Crypto.createHash("sha256").update(all).digest("hex"))
          .toBe(Crypto.createHash("sha256").update(payload).digest("hex"))
      }
    }), 60_000)

  it.scopedLive("closes a connection that sends an oversized frame, and keeps serving others", () =>
    Effect.gen(function*() {
      const h = yield* harness
      const raw = yield* h.raw
      const big = h.codec.binary ? Buffer.alloc(P.MAX_FRAME + 1, 1) : "x".repeat(P.MAX_FRAME + 1)
      expect(yield* Effect.promise(() => raw.send(big))).toBe(CLOSE_CODES.FrameTooLarge)
      const connection = yield* h.client
      const box = inbox(connection)
      connection.send(new P.Ping({ nonce: 1 }))
      expect((yield* Effect.promise(() => box.next()))._tag).toBe("Ping")
    }))

  it.scopedLive("survives garbled frames: 10,000 decoded, 500 sent live", () =>
    Effect.gen(function*() {
      const h = yield* harness
      const valid = everyMessage.map((m) => h.codec.encode(m))
      let refused = 0
      for (let i = 0; i < 10_000; i++) {
        try {
          h.codec.decode(garble(valid, i, h.codec.binary))
        } catch (error) {
          expect(error).toBeInstanceOf(TransportError)
          refused++
        }
      }
      expect(refused).toBeGreaterThan(2_000)
      const raw = yield* h.raw
      const outcomes = new Map<string | number, number>()
      for (let i = 0; i < 500; i++) {
        const outcome = yield* Effect.promise(() => raw.send(garble(valid, i, h.codec.binary)))
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1)
      }
      expect([...outcomes.keys()].every((k) => k === "echo" || k === CLOSE_CODES.Protocol)).toBe(true)
      expect(outcomes.get(CLOSE_CODES.Protocol) ?? 0).toBeGreaterThan(100)
      const connection = yield* h.client
      const box = inbox(connection)
      connection.send(new P.Ping({ nonce: 2 }))
      expect(yield* Effect.promise(() => box.next())).toEqual(new P.Ping({ nonce: 2 }))
    }), 60_000)

  it.scopedLive("closes only the connection whose handler throws (1011), and keeps serving others", () =>
    Effect.gen(function*() {
      const h = yield* harness
      const victim = yield* h.client
      const victimBox = inbox(victim)
      const bystander = yield* h.client
      const bystanderBox = inbox(bystander)
      victim.send(new P.Hello({ protocol: 1, token: "throw", transport: h.codec.name, agentVersion: "t" }))
      expect((yield* Effect.promise(() => victimBox.closedInfo())).code).toBe(CLOSE_CODES.Internal)
      bystander.send(new P.Ping({ nonce: 3 }))
      expect(yield* Effect.promise(() => bystanderBox.next())).toEqual(new P.Ping({ nonce: 3 }))
    }))

  it.scopedLive("reports close codes on both ends", () =>
    Effect.gen(function*() {
      const h = yield* harness
      const denied = yield* h.client
      const box = inbox(denied)
      denied.send(new P.Hello({ protocol: 1, token: "deny", transport: h.codec.name, agentVersion: "t" }))
      expect(yield* Effect.promise(() => box.closedInfo())).toEqual({ code: CLOSE_CODES.Unauthorized, reason: "Unauthorized" })

      const before = h.serverCloses.length
      const polite = yield* h.client
      const politeBox = inbox(polite)
      polite.close(CLOSE_CODES.Normal, "bye")
      expect((yield* Effect.promise(() => politeBox.closedInfo())).code).toBe(CLOSE_CODES.Normal)
      yield* Effect.promise(async () => {
        const until = Date.now() + 2_000
        while (h.serverCloses.length === before && Date.now() < until) await new Promise((r) => setTimeout(r, 10))
      })
      expect(h.serverCloses.at(-1)?.code).toBe(CLOSE_CODES.Normal)
    }))
})

describe.each(harnesses)("Heartbeat over %s", (_name, harness) => {
  const options = { interval: "1 second", timeout: "3 seconds" } as const
  const tick = Effect.zipRight(TestClock.adjust(options.interval), Effect.promise(() => new Promise((r) => setTimeout(r, 20))))

  it.scoped("stays up while the peer answers", () =>
    Effect.gen(function*() {
      const h = yield* harness
      const connection = yield* h.client
      inbox(connection)
      const fiber = yield* Effect.fork(Heartbeat.run(connection, options))
      for (let i = 0; i < 10; i++) yield* tick
      expect(connection.closed).toBe(false)
      expect(fiber.unsafePoll()).toBeNull()
      yield* Fiber.interrupt(fiber)
    }))

  it.scoped("closes with the timeout code when the peer goes silent", () =>
    Effect.gen(function*() {
      const h = yield* harness
      const connection = yield* h.client
      const box = inbox(connection)
      connection.send(new P.Hello({ protocol: 1, token: "silent", transport: h.codec.name, agentVersion: "t" }))
      const fiber = yield* Effect.fork(Heartbeat.run(connection, options))
      for (let i = 0; i < 4; i++) yield* tick
      const exit = yield* Fiber.await(fiber)
      expect(Exit.isFailure(exit) && JSON.stringify(exit.cause)).toContain("Timeout")
      expect((yield* Effect.promise(() => box.closedInfo())).code).toBe(CLOSE_CODES.Timeout)
    }))
})

describe("ws codec Data frames", () => {
  it("decodes what it encodes from the frame bytes and refuses malformed stream ids and base64", () => {
    for (const size of [0, 1, 2, 3, 4, 65_536]) {
      const payload = Crypto.randomBytes(size)
      const frame = Buffer.from(Ws.codec.encodeData(0xffff_ffff, payload) as string)
      const message = Ws.codec.decode(frame)
      expect(message._tag === "Data" && message.stream === 0xffff_ffff && Buffer.from(message.payload).equals(payload))
        .toBe(true)
    }
    for (const bad of ['"stream":0,"payload":""', '"stream":1,"payload":"QUJD$RA="', '"stream":1,"payload":"QUJDRA=A"']) {
      expect(() => Ws.codec.decode(Buffer.from(`{"_tag":"Data",${bad}}`))).toThrow(TransportError)
    }
    // Base64 Node decodes but a strict peer does not: the URL-safe alphabet and padding bits that are not zero. The
    // hub forwards a payload's text as it came, so it must be canonical (an attacker's review: -_-_QR== went on as is).
    for (const bad of ["-_-_QQ==", "QUJD-A==", "QR==", "QUJ="]) {
      for (const frame of [Buffer.from(`{"_tag":"Data","stream":1,"payload":"${bad}"}`), `{"_tag":"Data","stream":1,"payload":"${bad}"}`]) {
        expect(() => Ws.codec.decode(frame), bad).toThrow(TransportError)
      }
    }
    for (const good of ["QQ==", "QUI=", "QUE=", "QUJD"]) {
      expect(Ws.codec.decode(Buffer.from(`{"_tag":"Data","stream":1,"payload":"${good}"}`))._tag).toBe("Data")
    }
  })
})

describe("ws codec forwarding", () => {
  it("forwards a decoded payload under a shorter, equal or longer stream id, in place when the head fits", () => {
    for (const [from, to] of [[1_000_001, 2], [7, 8], [9, 10], [1, 0xffff_fffe]] as const) {
      const payload = Crypto.randomBytes(65_536)
      const received = Buffer.from(Ws.codec.encodeData(from, payload) as Uint8Array)
      const decoded = Ws.codec.decode(received)
      if (decoded._tag !== "Data") throw new Error("not Data")
      const forwarded = Ws.codec.encodeData(to, decoded.payload) as Buffer
      const again = Ws.codec.decode(Buffer.from(forwarded))
      expect(again._tag === "Data" && again.stream === to && Buffer.from(again.payload).equals(payload)).toBe(true)
      expect(JSON.parse(forwarded.toString()).stream).toBe(to)
      // A head no longer than the one received is written over it: the frame goes on as a view of the received one.
      expect(forwarded.buffer === received.buffer, `${from} -> ${to}`).toBe(String(to).length <= String(from).length)
    }
  })
})

describe("Credit frames", () => {
  it("every codec refuses a credit of 0 or beyond one stream window (a hostile peer's 4294967296)", () => {
    const creditFrame = (bytes: number) => {
      const frame = Buffer.alloc(9)
      frame[0] = 0x02
      frame.writeUInt32BE(1, 1)
      frame.writeUInt32BE(bytes, 5)
      return frame
    }
    expect(Msgpack.codec.decode(creditFrame(P.STREAM_WINDOW))).toEqual(new P.Credit({ stream: 1, bytes: P.STREAM_WINDOW }))
    expect(() => Msgpack.codec.decode(creditFrame(P.STREAM_WINDOW + 1))).toThrow(TransportError)
    expect(() => Msgpack.codec.decode(creditFrame(0xffff_ffff))).toThrow(TransportError)
    for (const bytes of [0, P.STREAM_WINDOW + 1, 4_294_967_296, 4_294_967_295, 1.5, -1, '"1"']) {
      expect(() => Ws.codec.decode(`{"_tag":"Credit","stream":1,"bytes":${bytes}}`)).toThrow(TransportError)
    }
    for (const stream of [0, 4_294_967_296, 1.5, '"1"']) {
      expect(() => Ws.codec.decode(`{"_tag":"Credit","stream":${stream},"bytes":1}`)).toThrow(TransportError)
    }
    // The ws codec's hand-checked Credit is the same message the Schema makes.
    const credit = Ws.codec.decode(`{"_tag":"Credit","stream":3,"bytes":${P.STREAM_WINDOW}}`)
    expect(credit).toEqual(new P.Credit({ stream: 3, bytes: P.STREAM_WINDOW }))
    expect(credit).toBeInstanceOf(P.Credit)
  })
})
