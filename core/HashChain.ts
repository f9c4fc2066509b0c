/**
 * The tamper-evident chain over the event log: a canonical byte encoding of an event envelope and
 * `hash = sha256(prev_hash || canonical(envelope))`, shared by the writer and by `verify`.
 *
 * JSON payloads enter the hash in exactly the text Postgres renders for a jsonb value (`data::text`), which the writer
 * produces with {@link jsonbText} before inserting. So `verify` hashes the stored text as it comes off the wire, with
 * no parse and no re-serialization: that is what lets it check ~200,000 events/s on one core.
 */
import { createHash } from "node:crypto"

/** The hash that precedes position 1: 32 zero bytes. */
export const GENESIS_HASH: Uint8Array = new Uint8Array(32)

/** Every stored column of an event except `hash`, in the form the chain commits to. */
export interface Envelope {
  readonly position: number
  readonly id: string
  readonly stream: string
  readonly version: number
  readonly workspaceId: string | null
  readonly type: string
  /** The payload as jsonb text (see {@link jsonbText}). */
  readonly dataJson: string
  /** The metadata as jsonb text. */
  readonly metaJson: string
  /** Commit time, whole milliseconds. */
  readonly recordedAt: Date
  readonly prevHash: Uint8Array
}

/** A value that {@link jsonbText} cannot render the way Postgres would; the append is refused. */
export class NotCanonical extends Error {}

const byteLength = (s: string): number => {
  // Keys are nearly always ASCII; only count UTF-8 bytes when they are not.
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return Buffer.byteLength(s, "utf8")
  return s.length
}

/** jsonb's key order: shorter keys first (in UTF-8 bytes), then bytewise. */
const compareKeys = (a: string, b: string): number => {
  const la = byteLength(a)
  const lb = byteLength(b)
  if (la !== lb) return la - lb
  if (la === a.length && lb === b.length) return a < b ? -1 : a > b ? 1 : 0
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"))
}

/**
 * The text Postgres renders for the jsonb value of `value` (`{"a": 1, "bb": [1, 2]}`: keys by length then bytes,
 * `": "` and `", "` separators, strings escaped as JSON.stringify does). Throws {@link NotCanonical} for values whose
 * jsonb text would differ from what JavaScript can say exactly: non-finite numbers, numbers JavaScript writes with an
 * exponent (jsonb writes 1e21 as 1000000000000000000000), and U+0000, which jsonb cannot store.
 */
export const jsonbText = (value: unknown): string => {
  switch (typeof value) {
    case "string":
      if (value.includes("\u0000")) throw new NotCanonical("strings may not contain U+0000")
      return JSON.stringify(value)
    case "number": {
      const text = String(value)
      if (!Number.isFinite(value) || text.includes("e")) throw new NotCanonical(`number ${text} has no exact jsonb text`)
      return Object.is(value, -0) ? "0" : text
    }
    case "boolean":
      return value ? "true" : "false"
    case "object": {
      if (value === null) return "null"
      if (Array.isArray(value)) {
        let out = "["
        for (let i = 0; i < value.length; i++) out += (i > 0 ? ", " : "") + jsonbText(value[i] === undefined ? null : value[i])
        return out + "]"
      }
      if (value instanceof Date) return jsonbText(value.toISOString())
      const keys = Object.keys(value).filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      keys.sort(compareKeys)
      let out = "{"
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i]!
        out += (i > 0 ? ", " : "") + jsonbText(key) + ": " + jsonbText((value as Record<string, unknown>)[key])
      }
      return out + "}"
    }
    default:
      throw new NotCanonical(`${typeof value} is not JSON`)
  }
}

/**
 * The canonical encoding of an envelope: a JSON array of its columns in table order, payloads embedded as their jsonb
 * text, the time as epoch milliseconds. `prev_hash` is not repeated here: it is the hash's prefix.
 */
export const canonicalEnvelope = (e: Envelope): string =>
  canonicalText(
    e.position,
    e.id,
    e.stream,
    e.version,
    e.workspaceId,
    e.type,
    e.dataJson,
    e.metaJson,
    e.recordedAt.getTime()
  )

/**
 * The canonical encoding from the columns' text: integers in decimal (a number or its text, which print alike),
 * payloads as jsonb text, the time as epoch milliseconds. What `canonicalEnvelope` renders, for readers that never
 * build an envelope (verify reads every column as text).
 */
export const canonicalText = (
  position: number | string,
  id: string,
  stream: string,
  version: number | string,
  workspaceId: string | null,
  type: string,
  dataJson: string,
  metaJson: string,
  recordedMs: number | string
): string =>
  "[" +
  position +
  "," +
  JSON.stringify(id) +
  "," +
  JSON.stringify(stream) +
  "," +
  version +
  "," +
  (workspaceId === null ? "null" : JSON.stringify(workspaceId)) +
  "," +
  JSON.stringify(type) +
  "," +
  dataJson +
  "," +
  metaJson +
  "," +
  recordedMs +
  "]"

/** The chain hash of an envelope: sha256(prev_hash || canonical(envelope)). */
export const hashEnvelope = (e: Envelope): Buffer =>
  createHash("sha256").update(e.prevHash).update(canonicalEnvelope(e), "utf8").digest()
