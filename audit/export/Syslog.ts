/**
 * The `syslog` export format: RFC 5424 messages whose structured data carries the chain and whose MSG is the event as
 * JSON (the `jsonl` object), plus the octet-counted framing of RFC 6587 §3.4.1 / RFC 5425 for TCP and TLS.
 *
 * `<PRI>1 TIMESTAMP HOSTNAME connect - TYPE [connect@32473 position="" id="" hash="" prevHash="" stream="" version=""
 * workspace="" type="" hub=""][origin software="connect" swVersion=""] MSG`
 *
 * SD-PARAM values escape `"`, `\` and `]` with a backslash (§6.3.3). RFC 5424 has no escape for control characters, so
 * in SD-PARAM values they (and lone surrogates, which UTF-8 cannot carry) become U+FFFD; the MSG keeps every value
 * exactly. MSG is JSON with every non-ASCII character `\u`-escaped, so it is plain MSG-ANY and needs no BOM (§6.4).
 */
import type { StoredEvent } from "../../core/EventLog.ts"
import type { FormatContext } from "./FormatContext.ts"
import { toAscii } from "./Json.ts"
import * as Jsonl from "./Jsonl.ts"
import { type Severity, summarize } from "./Summary.ts"

/**
 * The private enterprise number of our SD-ID: 32473 is the example number RFC 5612 reserves for documentation. A
 * product with an IANA-assigned number would put it here; receivers match `connect@32473` as a whole.
 */
export const EnterpriseNumber = 32473

/** The SD-ID of the chain's structured data element. */
export const SdId = `connect@${EnterpriseNumber}`

/** Facility 13, "log audit" (RFC 5424 §6.2.1, table 1). */
export const Facility = 13

/** Syslog severity per event severity: informational 6, a refusal notice 5, a repeated refusal warning 4. */
export const severityCode: Record<Severity, number> = { informational: 6, low: 5, medium: 4, unknown: 5 }

// Control characters (C0 and DEL) and lone surrogates: nothing an SD-PARAM value can escape.
const Unwritable = /[\u0000-\u001f\u007f]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g

/** An SD-PARAM value (RFC 5424 §6.3.3): `"`, `\` and `]` escaped; control characters and lone surrogates → U+FFFD. */
export const escapeParamValue = (value: string): string =>
  value.replace(Unwritable, "\uFFFD").replace(/["\\\]]/g, "\\$&")

/** A header field: printable US-ASCII only (others become `_`), at most `max` characters, `-` when empty. */
const headerField = (value: string, max: number): string => {
  const printable = value.replace(/[^\x21-\x7e]/g, "_").slice(0, max)
  return printable === "" ? "-" : printable
}

const param = (name: string, value: string | number | undefined) =>
  value === undefined ? "" : ` ${name}="${typeof value === "number" ? value : escapeParamValue(value)}"`

/** The RFC 5424 message of `stored` with `msg` as its MSG; a MSG that is not ASCII is marked UTF-8 by the BOM (§6.4). */
export const wrap = (stored: StoredEvent, context: FormatContext, msg: string): string => {
  const s = summarize(stored)
  const pri = Facility * 8 + severityCode[s.severity]
  const time = Number.isNaN(stored.recordedAt.getTime()) ? "-" : stored.recordedAt.toISOString()
  const sd = `[${SdId}` +
    param("position", stored.position) +
    param("id", stored.id) +
    param("hash", s.hash) +
    param("prevHash", s.prevHash) +
    param("stream", stored.stream) +
    param("version", stored.version) +
    param("workspace", stored.workspaceId ?? undefined) +
    param("type", stored.type) +
    param("hub", stored.meta.hubId) +
    `][origin software="connect"${param("swVersion", context.productVersion)}]`
  const body = /^[\x00-\x7f]*$/.test(msg) ? msg : "\uFEFF" + msg
  return `<${pri}>1 ${time} ${headerField(context.hostname, 255)} connect - ${headerField(stored.type, 32)} ${sd} ${body}`
}

/** One stored event as one RFC 5424 message (MSG: its `jsonl` object, ASCII-escaped), without framing. */
export const format = (stored: StoredEvent, context: FormatContext): string =>
  wrap(stored, context, toAscii(Jsonl.format(stored)))

/** A message in octet-counted framing (RFC 6587 §3.4.1, RFC 5425 §4.3): its length in bytes, a space, the message. */
export const frame = (message: string): Buffer => {
  const bytes = Buffer.from(message, "utf8")
  return Buffer.concat([Buffer.from(`${bytes.length} `, "latin1"), bytes])
}
