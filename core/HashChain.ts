/**
 * The tamper-evident chain over the event log: a canonical byte encoding of an event envelope and
 * `hash = sha256(prev_hash || canonical(envelope))`, shared by the writer and by `verify`.
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
  readonly data: unknown
  readonly meta: unknown
  readonly recordedAt: Date
  readonly prevHash: Uint8Array
}

/**
 * JSON with object keys sorted by UTF-16 code unit and no whitespace, so that the same value always encodes to the same
 * bytes whatever key order jsonb hands back.
 */
export const canonicalJson = (value: unknown): string => {
  if (value === null || typeof value !== "object") {
    // undefined is not JSON; inside objects it is dropped below, at top level it reads as null.
    return value === undefined ? "null" : JSON.stringify(value)
  }
  if (Array.isArray(value)) {
    let out = "["
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out += ","
      out += canonicalJson(value[i])
    }
    return out + "]"
  }
  const keys = Object.keys(value).sort()
  let out = "{"
  let first = true
  for (const key of keys) {
    const v = (value as Record<string, unknown>)[key]
    if (v === undefined) continue
    if (!first) out += ","
    first = false
    out += JSON.stringify(key) + ":" + canonicalJson(v)
  }
  return out + "}"
}

/** The canonical encoding of an envelope: a JSON array of its fields in column order. */
export const canonicalEnvelope = (e: Envelope): string =>
  "[" +
  e.position +
  "," +
  JSON.stringify(e.id) +
  "," +
  JSON.stringify(e.stream) +
  "," +
  e.version +
  "," +
  (e.workspaceId === null ? "null" : JSON.stringify(e.workspaceId)) +
  "," +
  JSON.stringify(e.type) +
  "," +
  canonicalJson(e.data) +
  "," +
  canonicalJson(e.meta) +
  "," +
  JSON.stringify(e.recordedAt.toISOString()) +
  "," +
  JSON.stringify(Buffer.from(e.prevHash).toString("hex")) +
  "]"

/** The chain hash of an envelope: sha256(prev_hash || canonical(envelope)). */
export const hashEnvelope = (e: Envelope): Buffer =>
  createHash("sha256").update(e.prevHash).update(canonicalEnvelope(e), "utf8").digest()
