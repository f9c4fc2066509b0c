/**
 * The `msgpack` transport plugin: WebSocket binary frames. Control messages are msgpack maps; the two hot messages
 * have a fixed binary header so the hub reads a stream id without decoding or copying the payload:
 *
 *   Data    [0x01][stream u32 BE][payload …]
 *   Credit  [0x02][stream u32 BE][bytes u32 BE]
 *   other   [0x00][msgpack map]
 *   Batch   [0x03]([length u32 BE][frame of one of the types above])…   (protocol revision ≥ `BATCH_REVISION`)
 */
import { Packr } from "msgpackr"
import { Credit, Data, MAX_CHUNK, MAX_FRAME, STREAM_WINDOW } from "../core/Protocol.ts"
import type { Message } from "../core/Protocol.ts"
import type { Codec, Transport } from "../core/Transport.ts"
import { checkFrameSize, isStreamId, protocolError, toMessage, trusted } from "./Framing.ts"
import { dial } from "./WebSocket.ts"

const TYPE_CONTROL = 0x00
const TYPE_DATA = 0x01
const TYPE_CREDIT = 0x02
const TYPE_BATCH = 0x03
const DATA_HEADER = 5

// Records would make frames depend on earlier frames; plain maps keep every frame self-contained.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false, int64AsType: "number" })

/**
 * The payload the last `decode` cut out of a received frame, with the 5 header bytes still in front of it: the hub
 * forwards it synchronously from the message callback, by rewriting those bytes in place instead of allocating and
 * copying a new frame. (One slot, not a WeakSet: a WeakSet entry per 64 KiB frame costs GC time; a payload
 * forwarded later, such as one held while a tunnel is authorized, takes the copying path.)
 */
let framed: Uint8Array | undefined

const encodeData = (stream: number, payload: Uint8Array): Uint8Array => {
  if (payload === framed) {
    framed = undefined
    const frame = Buffer.from(payload.buffer, payload.byteOffset - DATA_HEADER, payload.byteLength + DATA_HEADER)
    frame[0] = TYPE_DATA
    frame.writeUInt32BE(stream, 1)
    return frame
  }
  const size = payload.byteLength + DATA_HEADER
  const frame = size <= POOLED_FRAME ? (pool.pop() ?? newPooled()).subarray(0, size) : Buffer.allocUnsafe(size)
  frame[0] = TYPE_DATA
  frame.writeUInt32BE(stream, 1)
  frame.set(payload, DATA_HEADER)
  return frame
}

/**
 * Data frames an agent builds around the chunks it reads are taken from a free list and given back by the carrier
 * once written: a fresh 64 KiB buffer per chunk cost more than the copy into it (page faults and GC). 64 frames
 * (4 MiB, one stream window) is what one saturated stream keeps in flight in user space at most.
 */
const POOLED_FRAME = MAX_CHUNK + DATA_HEADER
const POOL_SIZE = 64
const pool: Array<Buffer> = []
const pooled = new WeakSet<ArrayBufferLike>()
const newPooled = () => {
  const frame = Buffer.allocUnsafeSlow(POOLED_FRAME)
  pooled.add(frame.buffer)
  return frame
}

const recycle = (frame: Uint8Array): void => {
  if (pool.length < POOL_SIZE && frame.byteOffset === 0 && pooled.has(frame.buffer)) {
    pool.push(Buffer.from(frame.buffer, 0, POOLED_FRAME))
  }
}

const encode = (message: Message): Uint8Array => {
  switch (message._tag) {
    case "Data":
      return encodeData(message.stream, message.payload)
    case "Credit": {
      const frame = Buffer.allocUnsafe(9)
      frame[0] = TYPE_CREDIT
      frame.writeUInt32BE(message.stream, 1)
      frame.writeUInt32BE(message.bytes, 5)
      return frame
    }
    default: {
      const body = packr.pack({ ...message })
      const frame = Buffer.allocUnsafe(body.byteLength + 1)
      frame[0] = TYPE_CONTROL
      frame.set(body, 1)
      return frame
    }
  }
}

const decode = (input: Uint8Array | string): Message => {
  if (typeof input === "string") throw protocolError("text frame on the msgpack transport")
  checkFrameSize(input.byteLength)
  const frame = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength)
  if (frame.byteLength === 0) throw protocolError("empty frame")
  switch (frame[0]) {
    case TYPE_DATA: {
      if (frame.byteLength < DATA_HEADER) throw protocolError("short Data frame")
      const stream = frame.readUInt32BE(1)
      if (!isStreamId(stream)) throw protocolError("invalid stream id")
      const payload = frame.subarray(DATA_HEADER)
      framed = payload
      return trusted(Data, { stream, payload })
    }
    case TYPE_CREDIT: {
      if (frame.byteLength !== 9) throw protocolError("bad Credit frame")
      const stream = frame.readUInt32BE(1)
      const bytes = frame.readUInt32BE(5)
      if (!isStreamId(stream) || bytes === 0 || bytes > STREAM_WINDOW) throw protocolError("invalid Credit frame")
      return trusted(Credit, { stream, bytes })
    }
    case TYPE_CONTROL: {
      let value: unknown
      try {
        value = packr.unpack(frame.subarray(1))
      } catch (cause) {
        throw protocolError("undecodable msgpack", cause)
      }
      return toMessage(value)
    }
    default:
      throw protocolError(`unknown frame type ${frame[0]}`)
  }
}

/** Packs frames into one batch frame: a type byte, then each frame behind its length. */
const batch = (frames: ReadonlyArray<Uint8Array>): Uint8Array => {
  let size = 1
  for (const frame of frames) size += 4 + frame.byteLength
  const out = Buffer.allocUnsafe(size)
  out[0] = TYPE_BATCH
  let offset = 1
  for (const frame of frames) {
    out.writeUInt32BE(frame.byteLength, offset)
    out.set(frame, offset + 4)
    offset += 4 + frame.byteLength
  }
  return out
}

/**
 * Splits a batch frame into its frames (views into it, not copies: a Data frame forwarded by the hub is rewritten in
 * place as usual). Each part must be a non-empty frame that is not itself a batch, and the lengths must add up.
 */
const unbatch = (input: Uint8Array): ReadonlyArray<Uint8Array> | undefined => {
  if (input.byteLength === 0 || input[0] !== TYPE_BATCH) return undefined
  checkFrameSize(input.byteLength)
  const frame = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength)
  const parts: Array<Uint8Array> = []
  let offset = 1
  while (offset < frame.byteLength) {
    if (offset + 4 > frame.byteLength) throw protocolError("truncated batch frame")
    const length = frame.readUInt32BE(offset)
    offset += 4
    if (length === 0 || length > MAX_FRAME || offset + length > frame.byteLength) {
      throw protocolError("bad frame length in a batch")
    }
    if (frame[offset] === TYPE_BATCH) throw protocolError("batch inside a batch")
    parts.push(frame.subarray(offset, offset + length))
    offset += length
  }
  if (parts.length === 0) throw protocolError("empty batch frame")
  return parts
}

/** The binary codec of the `msgpack` plugin. */
export const codec: Codec = {
  name: "msgpack",
  subprotocol: "connect.msgpack.v1",
  binary: true,
  encode,
  encodeData,
  decode,
  recycle,
  batch,
  unbatch
}

/** The `msgpack` transport: dials a hub over WebSocket with the binary codec. */
export const transport: Transport = { name: codec.name, dial: dial(codec) }
