/**
 * The `cef` export format: ArcSight Common Event Format, one line per event:
 * `CEF:0|connect|connect|<version>|<event type>|<title>|<severity>|<extension>`.
 *
 * Escaping is the spec's: in the header `\` and `|` are escaped with a backslash (a header may not span lines, so CR
 * and LF become spaces); in extension values `\` and `=` are escaped and newlines written as `\n` and `\r`. CEF has no
 * escape for U+0000, other control characters or lone surrogates: they become U+FFFD, while `cs6` (the stored payload
 * as JSON, where they are `\u` escapes) keeps the exact value. The chain comes first in the extension, so a receiver
 * that cuts a long record still has it.
 */
import { isIPv4 } from "node:net"
import type { StoredEvent } from "../../core/EventLog.ts"
import type { FormatContext } from "./FormatContext.ts"
import { storedJson } from "./Json.ts"
import { type Severity, summarize, title } from "./Summary.ts"

/** CEF severity, 0–10 (0–3 Low, 4–6 Medium): informational 1, a refusal 3, a repeated refusal 5. */
export const severityNumber: Record<Severity, string> = { unknown: "Unknown", informational: "1", low: "3", medium: "5" }

// U+0000 and the other C0 controls but TAB, LF and CR, and lone surrogates: nothing CEF can escape.
const Unwritable = /[\u0000-\u0008\u000b\u000c\u000e-\u001f]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g

/** A header field: `\` → `\\`, `|` → `\|`, CR and LF → space. */
export const escapeHeader = (value: string): string =>
  value.replace(Unwritable, "\uFFFD").replace(/[\\|\r\n]/g, (c) => (c === "\r" || c === "\n" ? " " : "\\" + c))

/** An extension value: `\` → `\\`, `=` → `\=`, LF → `\n`, CR → `\r`. */
export const escapeValue = (value: string): string =>
  value.replace(Unwritable, "\uFFFD").replace(/[\\=\r\n]/g, (c) => (c === "\n" ? "\\n" : c === "\r" ? "\\r" : "\\" + c))

type Value = string | number | undefined

/** One stored event as one CEF line, without its line terminator. */
export const format = (stored: StoredEvent, context: FormatContext): string => {
  const s = summarize(stored)
  const event = stored.event
  const actor = stored.meta.actor
  const at = (d: Date | undefined) => (d === undefined || Number.isNaN(d.getTime()) ? undefined : d.getTime())
  const ip = s.sourceIp
  const extension: Array<readonly [string, Value]> = [
    ["rt", at(stored.recordedAt)],
    ["externalId", stored.id],
    ["cn1Label", "position"],
    ["cn1", stored.position],
    ["cs1Label", "hash"],
    ["cs1", s.hash],
    ["cs2Label", "prevHash"],
    ["cs2", s.prevHash],
    ["cs3Label", "stream"],
    ["cs3", stored.stream],
    ["cn2Label", "version"],
    ["cn2", stored.version],
    ...(stored.workspaceId === null ? [] : [["cs4Label", "workspace"], ["cs4", stored.workspaceId]] as const),
    ["cat", s.group],
    ["act", stored.type],
    ["outcome", s.outcome],
    ["reason", s.reason],
    ...(ip === undefined ? [] : isIPv4(ip) ? [["src", ip]] as const : [["c6a2Label", "Source IPv6 Address"], ["c6a2", ip]] as const),
    ["suser", actor.id === undefined ? actor.kind : `${actor.kind}:${actor.id}`],
    ["duid", s.subject?.id],
    ["duser", s.subject?.name],
    ["requestClientApplication", s.userAgent],
    ["requestMethod", event._tag === "LinkAccessed" ? event.method : undefined],
    ["request", event._tag === "LinkAccessed" ? event.path : undefined],
    // CEF's `in` counts bytes flowing from source to destination, `out` the way back.
    ["in", event._tag === "TunnelClosed" ? event.bytesUp : undefined],
    ["out", event._tag === "TunnelClosed" ? event.bytesDown : undefined],
    ["cnt", s.count],
    ["start", at(s.firstAt)],
    ["end", at(s.lastAt)],
    ["deviceExternalId", stored.meta.hubId],
    ...(stored.meta.correlationId === undefined ? [] : [["cs5Label", "correlationId"], ["cs5", stored.meta.correlationId]] as const),
    ["msg", s.message],
    ["cs6Label", "data"],
    ["cs6", storedJson(stored.dataJson).text]
  ]
  const header = [
    "CEF:0",
    "connect",
    "connect",
    escapeHeader(context.productVersion),
    escapeHeader(stored.type),
    escapeHeader(title(stored.type)),
    severityNumber[s.severity]
  ].join("|")
  const pairs = extension
    .filter((pair): pair is readonly [string, string | number] => pair[1] !== undefined)
    .map(([key, value]) => `${key}=${typeof value === "number" ? String(value) : escapeValue(value)}`)
  return `${header}|${pairs.join(" ")}`
}
