/**
 * The msgpack codec's batch frames (protocol revision 1): what `batch` packs `unbatch` splits back into frames that
 * decode as before, and a malformed batch from a hostile peer is a protocol error, never a crash or a hang.
 */
import { describe, expect, it } from "@effect/vitest"
import * as P from "../../core/Protocol.ts"
import { TransportError } from "../../core/Transport.ts"
import * as Msgpack from "../../transports/Msgpack.ts"

const { batch, decode, encode, unbatch } = Msgpack.codec

const protocolError = (f: () => unknown) => {
  try {
    f()
  } catch (error) {
    return error instanceof TransportError ? `${error.reason}: ${error.message}` : `not a TransportError: ${error}`
  }
  return "no error"
}

const frame = (bytes: ReadonlyArray<number>) => Buffer.from(bytes)

describe("msgpack batch frames", () => {
  it("packs frames of every kind and splits them back, in order, into frames that decode as sent", () => {
    const messages = [
      new P.Data({ stream: 1, payload: new Uint8Array([1, 2, 3]) }),
      new P.Credit({ stream: 3, bytes: 65_536 }),
      new P.End({ stream: 5 }),
      new P.Reset({ stream: 7, reason: "ECONNRESET" }),
      new P.Data({ stream: 9, payload: new Uint8Array(4096).fill(7) })
    ]
    const packed = batch!(messages.map((m) => encode(m) as Uint8Array))
    const parts = unbatch!(packed)!
    // Payloads come back as Buffers (views into the batch); compare bytes.
    const plain = (m: P.Message) => (m._tag === "Data" ? { ...m, payload: [...m.payload] } : { ...m })
    expect(parts.map((p) => plain(decode(p)))).toEqual(messages.map(plain))
  })

  it("is not a batch unless its type byte says so; a peer without batches refuses one as an unknown frame type", () => {
    expect(unbatch!(encode(new P.End({ stream: 1 })) as Uint8Array)).toBeUndefined()
    expect(unbatch!(new Uint8Array(0))).toBeUndefined()
    const packed = batch!([encode(new P.End({ stream: 1 })) as Uint8Array, encode(new P.End({ stream: 3 })) as Uint8Array])
    expect(protocolError(() => decode(packed))).toBe("Protocol: unknown frame type 3")
  })

  it("refuses hostile batches: empty, truncated, zero or overlong lengths, a batch inside a batch, over the frame cap", () => {
    expect(protocolError(() => unbatch!(frame([3])))).toBe("Protocol: empty batch frame")
    expect(protocolError(() => unbatch!(frame([3, 0, 0])))).toBe("Protocol: truncated batch frame")
    expect(protocolError(() => unbatch!(frame([3, 0, 0, 0, 0])))).toBe("Protocol: bad frame length in a batch")
    expect(protocolError(() => unbatch!(frame([3, 0, 0, 0, 9, 1, 0, 0, 0, 1])))).toBe("Protocol: bad frame length in a batch")
    expect(protocolError(() => unbatch!(frame([3, 0xff, 0xff, 0xff, 0xff, 1])))).toBe("Protocol: bad frame length in a batch")
    expect(protocolError(() => unbatch!(frame([3, 0, 0, 0, 2, 3, 0])))).toBe("Protocol: batch inside a batch")
    const tooBig = Buffer.alloc(P.MAX_FRAME + 1)
    tooBig[0] = 3
    expect(protocolError(() => unbatch!(tooBig))).toMatch(/^FrameTooLarge: /)
    // 10,000 one-byte parts of an unknown type: split without trouble, each then refused by decode.
    const many = batch!(Array.from({ length: 10_000 }, () => frame([9])))
    const parts = unbatch!(many)!
    expect(parts).toHaveLength(10_000)
    expect(protocolError(() => decode(parts[0]!))).toBe("Protocol: unknown frame type 9")
  })
})
