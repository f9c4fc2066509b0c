/**
 * The `ws` transport plugin: WebSocket text frames carrying one JSON message each, stream payloads in base64 —
 * the debuggable wire shape (readable in any WebSocket inspector), at the cost of ~33% more bytes and two passes.
 */
import { Data, MAX_FRAME } from "../core/Protocol.ts"
import type { Message } from "../core/Protocol.ts"
import type { Codec, Transport } from "../core/Transport.ts"
import { checkFrameSize, isStreamId, protocolError, toMessage, trusted } from "./Framing.ts"
import { dial } from "./WebSocket.ts"

const toBuffer = (bytes: Uint8Array): Buffer =>
  Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

/**
 * Decodes strict (canonical, standard-alphabet) base64 or returns undefined; a length check replaces a regex scan of
 * the whole payload. Strict because the hub forwards a payload's text as it came (`encodeData`): Node's decoder also
 * takes the URL-safe "-" and "_" and non-zero padding bits, which a strict peer (a browser's atob) refuses.
 */
const fromBase64 = (text: string): Buffer | undefined => {
  if (text.length % 4 !== 0) return undefined
  const bytes = Buffer.from(text, "base64")
  // Node skips characters outside the alphabet, so any of them (or a misplaced "=") shortens the result.
  const padding = text.endsWith("==") ? 2 : text.endsWith("=") ? 1 : 0
  if (bytes.byteLength !== (text.length / 4) * 3 - padding) return undefined
  if (text.includes("-") || text.includes("_")) return undefined
  // The bits below the last byte, in the last character before the padding, are zero in canonical base64.
  if (padding > 0 && (ALPHABET.indexOf(text[text.length - 1 - padding]!) & (padding === 1 ? 0x3 : 0xf)) !== 0) {
    return undefined
  }
  return bytes
}

const DATA_PREFIX = Buffer.from(`{"_tag":"Data","stream":`)
const PAYLOAD_KEY = Buffer.from(`,"payload":"`)
const QUOTE = 0x22
const CLOSE_BRACE = 0x7d
const HEAD = DATA_PREFIX.byteLength

/**
 * The payload the last `decode` of a Data frame returned, and where its base64 text (through the closing `"}`) starts
 * in that frame: the hub forwards a payload from the same message callback, and writes the new stream id's head over
 * the old one in front of that text (or copies the text behind a longer head) instead of encoding the bytes it just
 * decoded back to base64 (one slot, as in Msgpack.ts; a payload forwarded later, held while a tunnel is authorized, is
 * encoded again). A frame handed to `decode` belongs to the codec from then on: its bytes may be rewritten.
 */
let lastPayload: Uint8Array | undefined
let lastFrame: Buffer | undefined
let lastText = 0

/**
 * A Data frame as UTF-8 bytes (ASCII), built in one buffer: the carrier writes it as a text message without turning a
 * string into bytes again, which for a 64 KiB chunk was a flatten and a transcoding copy of 87 KB per hop.
 */
const encodeData = (stream: number, payload: Uint8Array): Buffer => {
  const id = String(stream)
  const at = HEAD + id.length + PAYLOAD_KEY.byteLength
  if (payload === lastPayload) {
    const frame = lastFrame!
    lastPayload = undefined
    lastFrame = undefined
    if (at <= lastText) {
      // The new head fits in front of the text, over the old one: the frame is forwarded as a view of the one received
      // (nothing reads it afterwards), without allocating and copying ~87 KB per 64 KiB chunk.
      const out = frame.subarray(lastText - at)
      writeHead(out, id)
      return out
    }
    const text = frame.subarray(lastText)
    const out = Buffer.allocUnsafe(at + text.byteLength)
    writeHead(out, id)
    out.set(text, at)
    return out
  }
  // Built by hand: JSON.stringify of a message with a Uint8Array would write an object of indices.
  const base64 = toBuffer(payload).toString("base64")
  const out = Buffer.allocUnsafe(at + base64.length + 2)
  writeHead(out, id)
  out.write(base64, at, "latin1")
  out[out.byteLength - 2] = QUOTE
  out[out.byteLength - 1] = CLOSE_BRACE
  return out
}

const writeHead = (out: Buffer, id: string) => {
  DATA_PREFIX.copy(out, 0)
  out.write(id, HEAD, "latin1")
  PAYLOAD_KEY.copy(out, HEAD + id.length)
}

/**
 * The shape `encodeData` writes, read straight from the frame's bytes: JSON.parse of an 87 KB string and a regex
 * over its payload cost more than the base64 decode itself. Anything else takes the general JSON path.
 */
const decodeDataFast = (frame: Buffer): Message | undefined => {
  const n = frame.byteLength
  if (n < DATA_PREFIX.byteLength + PAYLOAD_KEY.byteLength + 3 || frame[n - 1] !== CLOSE_BRACE || frame[n - 2] !== QUOTE) {
    return undefined
  }
  if (frame.compare(DATA_PREFIX, 0, DATA_PREFIX.byteLength, 0, DATA_PREFIX.byteLength) !== 0) return undefined
  let i = DATA_PREFIX.byteLength
  let stream = 0
  const digits = i
  while (i < n && frame[i]! >= 0x30 && frame[i]! <= 0x39 && i - digits < 11) stream = stream * 10 + frame[i++]! - 0x30
  if (i === digits || (frame[digits] === 0x30 && i - digits > 1)) return undefined
  if (frame.compare(PAYLOAD_KEY, 0, PAYLOAD_KEY.byteLength, i, i + PAYLOAD_KEY.byteLength) !== 0) return undefined
  if (!isStreamId(stream)) throw protocolError("invalid Data frame")
  const text = i + PAYLOAD_KEY.byteLength
  const payload = fromBase64(frame.toString("latin1", text, n - 2))
  if (!payload) throw protocolError("invalid Data frame")
  lastPayload = payload
  lastFrame = frame
  lastText = text
  return trusted(Data, { stream, payload })
}

const decode = (frame: Uint8Array | string): Message => {
  if (typeof frame !== "string") {
    checkFrameSize(frame.byteLength)
    const bytes = toBuffer(frame)
    const data = decodeDataFast(bytes)
    if (data) return data
    frame = bytes.toString("utf8")
  } else if (frame.length > MAX_FRAME) {
    checkFrameSize(frame.length)
  }
  let value: unknown
  try {
    value = JSON.parse(frame)
  } catch (cause) {
    throw protocolError("frame is not JSON", cause)
  }
  if (typeof value === "object" && value !== null && (value as { _tag?: unknown })._tag === "Data") {
    const { stream, payload } = value as { stream?: unknown; payload?: unknown }
    if (!isStreamId(stream) || typeof payload !== "string") throw protocolError("invalid Data frame")
    const bytes = fromBase64(payload)
    if (!bytes) throw protocolError("invalid Data frame")
    return trusted(Data, { stream, payload: bytes })
  }
  return toMessage(value)
}

/** The JSON/base64 codec of the `ws` plugin. */
export const codec: Codec = {
  name: "ws",
  subprotocol: "connect.ws.v1",
  binary: false,
  encode: (message) =>
    message._tag === "Data" ? encodeData(message.stream, message.payload) : JSON.stringify(message),
  encodeData,
  decode
}

/** The `ws` transport: dials a hub over WebSocket with the JSON codec. */
export const transport: Transport = { name: codec.name, dial: dial(codec) }
