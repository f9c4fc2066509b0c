/**
 * The `tcp` carrier against a hostile or vanished peer (an attacker's review): a close frame never followed by the
 * peer's FIN does not hold the socket (the hub's sockets are half-open), nor make the hub's timeout closes no-ops; and a
 * 4-byte prefix declaring a 1 MiB frame reserves nothing until the bytes arrive.
 */
import * as Net from "node:net"
import { afterEach, describe, expect, it } from "vitest"
import * as Msgpack from "../../transports/Msgpack.ts"
import * as TcpCarrier from "../../transports/TcpCarrier.ts"
import { CLOSE_CODES, type Connection } from "../../core/Transport.ts"

const cleanups: Array<() => void> = []
afterEach(() => {
  for (const c of cleanups.splice(0)) c()
})

/** A half-open server socket wrapped by the carrier, and a raw client socket to it. */
const pair = () =>
  new Promise<{ server: Net.Socket; client: Net.Socket; closed: Promise<number>; connection: Connection }>((resolve, reject) => {
    const listener = Net.createServer({ allowHalfOpen: true }, (server) => {
      const connection = TcpCarrier.wrap(server, Msgpack.codec, "127.0.0.1")
      const closed = new Promise<number>((done) => connection.setHandler({ message: () => {}, close: (info) => done(info.code) }))
      resolve({ server, client, closed, connection })
    })
    cleanups.push(() => listener.close())
    listener.on("error", reject)
    let client: Net.Socket
    listener.listen(0, "127.0.0.1", () => {
      client = Net.connect({ port: (listener.address() as Net.AddressInfo).port, host: "127.0.0.1", allowHalfOpen: true })
      cleanups.push(() => client.destroy())
    })
  })

const closeFrame = (code: number) => {
  const frame = Buffer.alloc(6)
  frame.writeUInt32BE((0x8000_0000 | 2) >>> 0, 0)
  frame.writeUInt16BE(code, 4)
  return frame
}

describe("tcp carrier, hostile peer", () => {
  it("a peer's close frame without its FIN: the socket is destroyed after the close timeout and the handler told", async () => {
    const { client, closed, server } = await pair()
    client.write(closeFrame(1000))
    // The client never ends its side.
    const code = await Promise.race([closed, new Promise<string>((r) => setTimeout(() => r("still open"), 8_000))])
    expect(code).toBe(1000)
    expect(server.destroyed).toBe(true)
  }, 20_000)

  it("a timeout close still destroys a connection whose close is under way", async () => {
    const { client, closed, connection, server } = await pair()
    client.write(closeFrame(1000))
    await new Promise((r) => setTimeout(r, 200))
    expect(server.destroyed).toBe(false)
    // What the hub's heartbeat does to a silent peer: the socket goes at once, not after the close timeout.
    connection.close(CLOSE_CODES.Timeout, "timeout")
    expect(server.destroyed).toBe(true)
    expect(await closed).toBe(1000)
  })

  it("a prefix declaring 1 MiB reserves memory only as bytes arrive", () => {
    const before = process.memoryUsage().arrayBuffers
    const framers = Array.from({ length: 200 }, () => TcpCarrier.framer(() => {}, () => {}))
    const prefix = Buffer.alloc(5)
    prefix.writeUInt32BE(1024 * 1024, 0)
    for (const read of framers) read(prefix)
    const grown = process.memoryUsage().arrayBuffers - before
    // Before: 200 × 1 MiB allocated up front (~200 MiB).
    expect(grown).toBeLessThan(20 * 1024 * 1024)
    expect(framers.length).toBe(200)
  })

  it("frames split across reads in every way come out whole and in order", () => {
    const frames: Array<string> = []
    const errors: Array<string> = []
    const read = TcpCarrier.framer((f, close) => frames.push(`${close ? "c" : "d"}:${f.toString()}`), (e) => errors.push(e.message))
    const one = (text: string, close = false) => {
      const b = Buffer.alloc(4 + text.length)
      b.writeUInt32BE(((close ? 0x8000_0000 : 0) | text.length) >>> 0, 0)
      b.write(text, 4)
      return b
    }
    const stream = Buffer.concat([one("alpha"), one("b"), one("x".repeat(3000)), one("zz", true)])
    for (const size of [1, 2, 3, 5, 7, 4096]) {
      frames.length = 0
      for (let i = 0; i < stream.byteLength; i += size) read(stream.subarray(i, i + size))
      expect(frames, `chunks of ${size}`).toEqual(["d:alpha", "d:b", `d:${"x".repeat(3000)}`, "c:zz"])
    }
    expect(errors).toEqual([])
    read(Buffer.from([0, 0, 0, 0]))
    expect(errors).toEqual(["empty frame"])
  })
})
