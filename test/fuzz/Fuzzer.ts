/**
 * The fuzzer's generators, pure and seeded: a PRNG, hostile values (huge numbers, NUL, lone surrogates, 1 MB
 * strings, wrong types), protocol messages with mutated fields, their frames in both codecs (valid, bit-flipped,
 * truncated, spliced, hand-built binary headers, msgpack length bombs), and raw HTTP requests to the hub's API.
 * The same seed gives the same sequence of frames and requests for each actor (see `fork`).
 */
import { Packr } from "msgpackr"
import * as Protocol from "../../core/Protocol.ts"
import { codec as msgpackCodec } from "../../transports/Msgpack.ts"
import { codec as wsCodec } from "../../transports/Ws.ts"

/** A seeded pseudo-random source (mulberry32: 32-bit state, good enough to pick test inputs, not for secrets). */
export interface Rng {
  /** The seed this source started from. */
  readonly seed: number
  /** The seed of the campaign it was forked from (what `FUZZ_SEED` reproduces). */
  readonly root: number
  /** A float in [0, 1). */
  readonly next: () => number
  /** An integer in [0, n). */
  readonly int: (n: number) => number
  /** True with probability `p`. */
  readonly chance: (p: number) => boolean
  /** One element of `items`. */
  readonly pick: <A>(items: ReadonlyArray<A>) => A
  /** `n` random bytes. */
  readonly bytes: (n: number) => Buffer
  /** An independent source for actor `label`, so each actor's sequence does not depend on the others' timing. */
  readonly fork: (label: string) => Rng
}

/** A PRNG starting from `seed`. */
export const makeRng = (seed: number, root = seed): Rng => {
  let state = seed >>> 0
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const int = (n: number) => Math.floor(next() * n)
  return {
    seed,
    root,
    next,
    int,
    chance: (p) => next() < p,
    pick: (items) => items[int(items.length)]!,
    bytes: (n) => {
      const out = Buffer.allocUnsafe(n)
      for (let i = 0; i < n; i++) out[i] = int(256)
      return out
    },
    fork: (label) => {
      let h = seed >>> 0
      for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193) >>> 0
      return makeRng(h, root)
    }
  }
}

/** The seed from `FUZZ_SEED` (decimal or 0x…), else a fixed one so that `npm test` is repeatable. */
export const seedFromEnv = (fallback = 0x5eed_2024): number => {
  const text = process.env.FUZZ_SEED
  if (text === undefined || text.trim() === "") return fallback
  const seed = Number(text)
  if (!Number.isSafeInteger(seed)) throw new Error(`FUZZ_SEED must be an integer, got ${text}`)
  return seed >>> 0
}

/** The campaign's length from `FUZZ_SECONDS` (default `fallback`), in milliseconds. */
export const durationFromEnv = (fallback: number): number => {
  const seconds = Number(process.env.FUZZ_SECONDS ?? fallback)
  if (!(seconds > 0)) throw new Error(`FUZZ_SECONDS must be a positive number, got ${process.env.FUZZ_SECONDS}`)
  return Math.round(seconds * 1000)
}

/** Numbers a schema or a `writeUInt32BE` might not expect. */
export const hostileNumbers: ReadonlyArray<number> = [
  0, -1, 1, 0.5, -0, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53, -(2 ** 53), Number.MAX_SAFE_INTEGER + 2,
  1e308, -1e308, Number.EPSILON, NaN, Infinity, -Infinity, Protocol.STREAM_WINDOW, Protocol.STREAM_WINDOW + 1,
  Protocol.CONNECTION_WINDOW, Protocol.MAX_CHUNK, Protocol.MAX_FRAME, 65535, 65536, 70000
]

/** One megabyte of text: big enough to matter, under `MAX_FRAME` once framed (the ws codec counts UTF-16 units). */
const Megabyte = "m".repeat(1_000_000)

/** Strings a validator or a log line might not expect. */
export const hostileStrings: ReadonlyArray<string> = [
  "", " ", "\u0000", "a\u0000b", "\ud800", "x\udc00y", "\udfff\ud800", "💥", "\u202e", "\r\n", "../../../etc/passwd",
  "%00", "%", "<script>", "${7*7}", "__proto__", "constructor", "toString", "null", "0", "-1", "1e400",
  "é".repeat(300), "a".repeat(70_000)
]

/** A random hostile or ordinary string; a 1 MB one now and then (`big`). */
export const randomString = (rng: Rng, big = true): string => {
  switch (rng.int(6)) {
    case 0:
      return rng.pick(hostileStrings)
    case 1:
      return big && rng.chance(0.05) ? Megabyte : rng.pick(hostileStrings)
    case 2: {
      // Random UTF-16 code units: lone surrogates, NULs and controls included.
      const n = rng.int(40)
      let s = ""
      for (let i = 0; i < n; i++) s += String.fromCharCode(rng.int(0x10000))
      return s
    }
    default:
      return `fz-${rng.int(1_000_000).toString(36)}`
  }
}

/** A value of any JSON/msgpack type, nested up to `depth`. */
export const randomValue = (rng: Rng, depth = 2): unknown => {
  switch (rng.int(depth > 0 ? 9 : 6)) {
    case 0:
      return rng.pick(hostileNumbers)
    case 1:
      return randomString(rng)
    case 2:
      return rng.chance(0.5)
    case 3:
      return null
    case 4:
      return rng.int(100)
    case 5:
      return new Uint8Array(rng.bytes(rng.int(64)))
    case 6:
      return Array.from({ length: rng.int(4) }, () => randomValue(rng, depth - 1))
    case 7:
      return Object.fromEntries(Array.from({ length: rng.int(4) }, () => [randomString(rng, false), randomValue(rng, depth - 1)]))
    default:
      return { _tag: rng.pick(Tags), stream: randomValue(rng, 0) }
  }
}

/** Every protocol tag, and some that are not. */
export const Tags: ReadonlyArray<string> = [
  "Hello", "Welcome", "Expose", "Unexpose", "Reach", "Check", "Probe", "ProbeResult", "CheckResult", "Ack", "Open",
  "Opened", "Data", "Credit", "End", "Reset", "Ping", "Pong", "Error", "", "Bogus", "__proto__", "constructor",
  "toString", "hasOwnProperty", "data", "DATA"
]

const step = (rng: Rng) => ({ ok: rng.chance(0.5), ms: rng.pick(hostileNumbers), detail: randomString(rng, false) })

/** Plausible fields for `tag`: mostly valid values, so that mutations reach past the schema. */
const fieldsOf = (rng: Rng, tag: string, stream: () => number, token: string | undefined): Record<string, unknown> => {
  const request = rng.chance(0.8) ? rng.int(1000) : rng.pick(hostileNumbers)
  const name = rng.chance(0.7) ? `fz-${rng.int(8)}` : randomString(rng)
  switch (tag) {
    case "Hello":
      return {
        protocol: rng.chance(0.8) ? Protocol.PROTOCOL_VERSION : rng.pick(hostileNumbers),
        token: token !== undefined && rng.chance(0.7) ? token : rng.chance(0.5) ? rng.bytes(32).toString("hex") : randomString(rng),
        transport: rng.pick(["ws", "msgpack", "memory", randomString(rng, false)]),
        agentVersion: randomString(rng),
        ...(rng.chance(0.5) ? { label: randomString(rng) } : {})
      }
    case "Expose":
      return {
        request,
        name,
        host: rng.chance(0.6) ? "127.0.0.1" : rng.pick(["169.254.169.254", "localhost", "::1", randomString(rng)]),
        port: rng.chance(0.6) ? 1 + rng.int(65535) : rng.pick(hostileNumbers)
      }
    case "Unexpose":
    case "Reach":
    case "Check":
      return { request, name }
    case "Probe":
      return { request, service: name }
    case "ProbeResult":
    case "CheckResult":
      return {
        request,
        report: rng.chance(0.7)
          ? { host: randomString(rng, false), port: rng.pick(hostileNumbers), dns: step(rng), tcp: step(rng), tls: step(rng), http: step(rng), ok: true, elapsedMs: 1 }
          : randomValue(rng)
      }
    case "Ack":
      return { request }
    case "Open":
      return { stream: stream(), service: name }
    case "Opened":
    case "End":
      return { stream: stream() }
    case "Data":
      return { stream: stream(), payload: new Uint8Array(rng.bytes(rng.int(256))) }
    case "Credit":
      return { stream: stream(), bytes: rng.chance(0.5) ? 1 + rng.int(Protocol.STREAM_WINDOW) : rng.pick(hostileNumbers) }
    case "Reset":
      return { stream: stream(), reason: randomString(rng) }
    case "Ping":
    case "Pong":
      return { nonce: rng.chance(0.7) ? rng.int(1e6) : rng.pick(hostileNumbers) }
    case "Error":
      return {
        code: rng.pick(["Protocol", "ServiceNotFound", "Unavailable", randomString(rng, false)]),
        message: randomString(rng),
        ...(rng.chance(0.5) ? { stream: stream() } : {}),
        ...(rng.chance(0.3) ? { request } : {})
      }
    case "Welcome":
      return { agentId: randomString(rng), workspaceId: randomString(rng), protocol: 1, heartbeatMs: rng.pick(hostileNumbers) }
    default:
      return { stream: stream(), value: randomValue(rng) }
  }
}

/** A message-shaped object for `tag` (random when omitted), with a field dropped, retyped or added now and then. */
export const randomMessage = (
  rng: Rng,
  options: { readonly tag?: string; readonly stream?: () => number; readonly token?: string } = {}
): Record<string, unknown> => {
  const tag = options.tag ?? rng.pick(Tags)
  const stream = options.stream ?? (() => (rng.chance(0.7) ? 1 + 2 * rng.int(8) : rng.pick(hostileNumbers)))
  const fields: Record<string, unknown> = { _tag: tag, ...fieldsOf(rng, tag, stream, options.token) }
  const keys = Object.keys(fields)
  if (rng.chance(0.15)) delete fields[rng.pick(keys)]
  if (rng.chance(0.15)) fields[rng.pick(keys)] = randomValue(rng)
  if (rng.chance(0.1)) fields[randomString(rng, false)] = randomValue(rng)
  return fields
}

/** A wire frame: text (ws codec) or binary (either codec; a text frame on msgpack is itself a violation). */
export type Frame = string | Buffer

/** Flips bits, truncates, splices, duplicates or inserts bytes. */
export const mutateBytes = (rng: Rng, input: Buffer): Buffer => {
  const bytes = Buffer.from(input)
  switch (rng.int(6)) {
    case 0: {
      for (let i = 0, n = 1 + rng.int(4); i < n && bytes.length > 0; i++) bytes[rng.int(bytes.length)]! ^= 1 << rng.int(8)
      return bytes
    }
    case 1:
      return bytes.subarray(0, rng.int(bytes.length + 1))
    case 2: {
      const at = rng.int(bytes.length + 1)
      return Buffer.concat([bytes.subarray(0, at), rng.bytes(1 + rng.int(16)), bytes.subarray(at)])
    }
    case 3:
      return Buffer.concat([bytes, bytes])
    case 4: {
      if (bytes.length > 0) bytes[rng.int(bytes.length)] = rng.pick([0x00, 0xff, 0x7f, 0x80, 0xc1, 0x22, 0x5c, 0x7b])
      return bytes
    }
    default:
      return bytes.subarray(rng.int(Math.max(1, bytes.length)))
  }
}

/** JSON made to break a parser or a validator: deep nesting, huge literals, duplicate keys, bad escapes. */
const hostileJson = (rng: Rng): string => {
  switch (rng.int(7)) {
    case 0: {
      const depth = rng.pick([100, 10_000, 200_000])
      return `${"[".repeat(depth)}${"]".repeat(depth)}`
    }
    case 1:
      return `{"_tag":"Credit","stream":1,"bytes":1e400}`
    case 2:
      return `{"_tag":"Data","stream":1,"payload":"${rng.pick(["", "====", "A", "AAA=A", "@@@@", "AA==AA==", "\\u0000AAA"])}"}`
    case 3:
      return `{"_tag":"Open","_tag":"Data","stream":1,"stream":-1,"service":"x"}`
    case 4:
      return `{"_tag":"Reset","stream":1,"reason":"\\ud800\\u0000"}`
    case 5:
      return `{"_tag":"Data","stream":${rng.pick(["0", "01", "4294967296", "99999999999", "1.5", "-1", "1e3"])},"payload":"AAAA"}`
    default:
      return `{"__proto__":{"_tag":"Ping","nonce":1},"constructor":{"prototype":{"polluted":true}}}`
  }
}

/** One frame of the `ws` codec (JSON text): a random message, encoded then maybe mutated, or hostile JSON. */
export const wsFrame = (rng: Rng, message: Record<string, unknown>): Frame => {
  switch (rng.int(8)) {
    case 0:
      return hostileJson(rng)
    case 1:
      // Invalid UTF-8 or binary where text is expected.
      return mutateBytes(rng, Buffer.from(jsonOf(message)))
    case 2:
      return mutateBytes(rng, Buffer.from(jsonOf(message))).toString("latin1")
    default:
      return jsonOf(message)
  }
}

/** JSON of a message-shaped object the way the codec writes it (payloads in base64). */
const jsonOf = (message: Record<string, unknown>): string =>
  JSON.stringify(message, (_key, value: unknown) =>
    value instanceof Uint8Array ? Buffer.from(value).toString("base64") : value)

// A second packer: the codec's own, but free to write anything (records, extension types) the hub's one never does.
const anyPackr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: true })

/** msgpack headers that announce far more than follows (array32, map32, str32, bin32, ext32). */
const lengthBombs: ReadonlyArray<Buffer> = [
  Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff]),
  Buffer.from([0xdf, 0xff, 0xff, 0xff, 0xff]),
  Buffer.from([0xdb, 0x7f, 0xff, 0xff, 0xff]),
  Buffer.from([0xc6, 0xff, 0xff, 0xff, 0xff]),
  Buffer.from([0xc9, 0x7f, 0xff, 0xff, 0xff, 0x01]),
  Buffer.from([0xd4, 0xff, 0x00]),
  Buffer.from([0xd7, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
  Buffer.from([0xc1]),
  Buffer.from([0xde, 0x00, 0x01, 0xa4, 0x5f, 0x74, 0x61, 0x67])
]

/** One frame of the `msgpack` codec: a random message, a hand-built Data/Credit header, a bomb, or random bytes. */
export const msgpackFrame = (rng: Rng, message: Record<string, unknown>): Frame => {
  const u32 = () => (rng.chance(0.5) ? 1 + 2 * rng.int(8) : rng.pick([0, 1, 2, 0xffff_ffff, 0x8000_0000, rng.int(2 ** 32)]))
  switch (rng.int(10)) {
    case 0: {
      // Data: [0x01][u32 stream][payload], with a short header now and then.
      const frame = Buffer.alloc(5 + rng.pick([0, 1, 100, Protocol.MAX_CHUNK]))
      frame[0] = 0x01
      frame.writeUInt32BE(u32(), 1)
      return rng.chance(0.1) ? frame.subarray(0, rng.int(5)) : frame
    }
    case 1: {
      // Credit: [0x02][u32 stream][u32 bytes], of the right length or not.
      const frame = Buffer.alloc(rng.chance(0.8) ? 9 : rng.int(14))
      if (frame.length > 0) frame[0] = 0x02
      if (frame.length >= 5) frame.writeUInt32BE(u32(), 1)
      if (frame.length >= 9) frame.writeUInt32BE(rng.pick([0, 1, Protocol.STREAM_WINDOW, Protocol.STREAM_WINDOW + 1, 0xffff_ffff]), 5)
      return frame
    }
    case 2:
      return Buffer.concat([Buffer.from([0x00]), rng.pick(lengthBombs)])
    case 3:
      return Buffer.concat([Buffer.from([rng.int(256)]), rng.bytes(rng.int(64))])
    case 4:
      return Buffer.concat([Buffer.from([0x00]), anyPackr.pack(randomValue(rng, 3))])
    case 5:
      return mutateBytes(rng, packed(message))
    case 6:
      // A text frame on the binary transport.
      return jsonOf(message)
    default:
      return packed(message)
  }
}

/** A message-shaped object as the msgpack codec frames a control message, without validating it first. */
const packed = (message: Record<string, unknown>): Buffer => {
  let body: Buffer
  try {
    body = anyPackr.pack(message)
  } catch {
    body = Buffer.from([0xc0])
  }
  return Buffer.concat([Buffer.from([0x00]), body])
}

/** The two codecs, by name: what a fuzzing client frames its messages with. */
export const codecs = { ws: wsCodec, msgpack: msgpackCodec } as const

/** A valid frame of `message` in `codec` (what an honest agent would send). */
export const encode = (codec: "ws" | "msgpack", message: Protocol.Message): Frame => {
  const frame = codecs[codec].encode(message)
  return typeof frame === "string" ? frame : Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength)
}

/** A random frame for `codec`: mutated, hand-built or hostile. */
export const randomFrame = (
  rng: Rng,
  codec: "ws" | "msgpack",
  options: { readonly tag?: string; readonly stream?: () => number; readonly token?: string } = {}
): Frame => {
  const message = randomMessage(rng, options)
  return codec === "ws" ? wsFrame(rng, message) : msgpackFrame(rng, message)
}

/** A short printable description of a frame for a reproduction (first bytes in hex or text). */
export const describeFrame = (frame: Frame): string =>
  typeof frame === "string"
    ? `text(${frame.length}) ${JSON.stringify(frame.slice(0, 160))}`
    : `binary(${frame.length}) ${frame.subarray(0, 48).toString("hex")}`

/** Secrets the HTTP fuzzer may put in `Authorization`. */
export interface HttpKeys {
  readonly apiKey: string
  readonly agentToken: string
}

/** One raw HTTP/1.1 request and what it is allowed to get back. */
export interface HttpCase {
  readonly method: string
  readonly path: string
  /** The whole request as sent. */
  readonly raw: Buffer
  /** True when the request is not valid HTTP: the hub may also cut it without an answer. */
  readonly malformed: boolean
}

const Paths: ReadonlyArray<string> = [
  "/health", "/v1", "/v1/", "/v1/agents", "/v1/agents/", "/v1/agents/rotate", "/v1/services", "/v1/agent",
  "/v1/agents/../services", "/v1/agents?label=x", "/v1/%00", "/v1/%ZZ", "/v1/agents/%2e%2e", "//v1/agents", "/",
  "/health?x=1", "/v2/agents", "/V1/AGENTS", "/v1/agents#frag", "*"
]
const Methods: ReadonlyArray<string> = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "get", "FOO"]

/** Every byte of `text`'s UTF-8 as %XX (encodeURIComponent throws on a lone surrogate). */
const percentEncoded = (text: string): string =>
  [...Buffer.from(text, "utf8")].map((b) => `%${b.toString(16).padStart(2, "0")}`).join("")

/** A random request to `/v1/*` or `/health`: methods, paths, headers, bodies and keys, sometimes malformed. */
export const httpCase = (rng: Rng, keys: HttpKeys): HttpCase => {
  const method = rng.pick(Methods)
  let path = rng.pick(Paths)
  if (rng.chance(0.1)) path = `/v1/${percentEncoded(randomString(rng, false)).slice(0, 2000)}`
  if (rng.chance(0.03)) path = `/v1/agents?${"q".repeat(rng.pick([1_000, 20_000]))}`
  // Now and then a WebSocket handshake (to the agent endpoint or not), mostly a broken one.
  const upgrade = rng.chance(0.05)
  const headers: Array<[string, string | Buffer]> = [["Host", "127.0.0.1"], ["Connection", upgrade ? "Upgrade" : "close"]]
  if (upgrade) {
    headers.push(["Upgrade", rng.pick(["websocket", "h2c", ""])])
    if (rng.chance(0.5)) headers.push(["Sec-WebSocket-Key", rng.pick([rng.bytes(16).toString("base64"), "short", ""])])
    if (rng.chance(0.5)) headers.push(["Sec-WebSocket-Version", rng.pick(["13", "8", "x"])])
  }
  switch (rng.int(7)) {
    case 0:
      headers.push(["Authorization", `Bearer ${keys.apiKey}`])
      break
    case 1:
      headers.push(["Authorization", `Bearer ${keys.agentToken}`])
      break
    case 2:
      headers.push(["Authorization", `Bearer pc_${rng.bytes(20).toString("hex")}`])
      break
    case 3:
      headers.push(["Authorization", rng.pick(["Bearer", "Bearer ", "Basic YTpi", `bearer ${keys.apiKey}`, `Bearer ${keys.apiKey}x`, "Bearer \u00ff\u00fe"])])
      break
    case 4:
      headers.push(["Authorization", Buffer.concat([Buffer.from("Bearer "), rng.bytes(12)])])
      break
    default:
      break
  }
  if (rng.chance(0.3)) headers.push(["User-Agent", Buffer.from(randomString(rng, false), "latin1")])
  if (rng.chance(0.2)) headers.push(["X-Forwarded-For", rng.pick(["1.2.3.4", "::1, 10.0.0.1", "garbage", "999.1.1.1", ""])])
  if (rng.chance(0.05)) for (let i = 0; i < 300; i++) headers.push([`X-F${i}`, "y".repeat(50)])
  if (rng.chance(0.03)) headers.push(["X-Big", "z".repeat(rng.pick([9_000, 20_000]))])
  if (rng.chance(0.1)) headers.push(["Upgrade", "websocket"], ["Sec-WebSocket-Protocol", rng.pick(["connect.ws.v1", "connect.msgpack.v1", "nope"])])
  let body: Buffer | undefined
  if (rng.chance(0.6)) {
    switch (rng.int(8)) {
      case 0:
        body = Buffer.from(JSON.stringify({ label: randomString(rng) }))
        break
      case 1:
        body = Buffer.from(`{"label":"${rng.pick(["\\u0000", "\\ud800", "\\udc00x", "a\\u0000"])}"}`)
        break
      case 2:
        body = Buffer.from(JSON.stringify(randomValue(rng, 3), (_k, v: unknown) => (v instanceof Uint8Array ? [...v] : v)) ?? "null")
        break
      case 3:
        body = rng.bytes(rng.int(300))
        break
      case 4:
        body = Buffer.alloc(rng.pick([64 * 1024, 64 * 1024 + 1, 200_000]), 0x20)
        break
      case 5:
        body = Buffer.from(hostileJson(rng))
        break
      default:
        body = Buffer.from(JSON.stringify({ label: `fz-${rng.int(1000)}` }))
    }
    headers.push(["Content-Type", rng.pick(["application/json", "text/plain", "application/json; charset=latin1", ""])])
  }
  const chunked = body !== undefined && rng.chance(0.2)
  if (body !== undefined) headers.push(chunked ? ["Transfer-Encoding", "chunked"] : ["Content-Length", String(body.length)])
  const head = Buffer.concat([
    Buffer.from(`${method} ${path} HTTP/1.1\r\n`, "latin1"),
    ...headers.map(([k, v]) => Buffer.concat([Buffer.from(`${k}: `), typeof v === "string" ? Buffer.from(v, "latin1") : v, Buffer.from("\r\n")])),
    Buffer.from("\r\n")
  ])
  const payload = body === undefined
    ? Buffer.alloc(0)
    : chunked
    ? Buffer.concat([Buffer.from(`${body.length.toString(16)}\r\n`), body, Buffer.from("\r\n0\r\n\r\n")])
    : body
  const raw = Buffer.concat([head, payload])
  // A mutated request, or headers with raw control bytes, are not valid HTTP; everything else is.
  const mutated = rng.chance(0.1)
  const controls = /[\x00-\x08\x0a-\x1f\x7f]/.test(head.subarray(0, head.length - 4).toString("latin1").replace(/\r\n/g, ""))
  return { method, path, raw: mutated ? mutateBytes(rng, raw) : raw, malformed: mutated || controls }
}
