/**
 * The export formats by name: the record of a stored event in each, and the same record as an RFC 5424 message for
 * the syslog sinks (the `syslog` format is one already; any other format becomes the MSG of one, so a CEF or OCSF
 * pipeline behind a syslog server still gets the chain in the structured data).
 */
import type { StoredEvent } from "../../core/EventLog.ts"
import * as Cef from "./Cef.ts"
import * as Ecs from "./Ecs.ts"
import type { FormatContext } from "./FormatContext.ts"
import { toAscii } from "./Json.ts"
import * as Jsonl from "./Jsonl.ts"
import * as Ocsf from "./Ocsf.ts"
import * as Syslog from "./Syslog.ts"

/** Every export format, as `--format` names them. */
export const Formats = ["jsonl", "ecs", "ocsf", "cef", "syslog"] as const

/** An export format. */
export type Format = (typeof Formats)[number]

const formatters: Record<Format, (stored: StoredEvent, context: FormatContext) => string> = {
  jsonl: (stored) => Jsonl.format(stored),
  ecs: Ecs.format,
  ocsf: Ocsf.format,
  cef: Cef.format,
  syslog: Syslog.format
}

/** The record of a stored event in a format: one line, without its terminator (no format ever writes a raw newline). */
export const record = (format: Format, stored: StoredEvent, context: FormatContext): string =>
  formatters[format](stored, context)

/**
 * The record as an RFC 5424 message: `syslog` as is; JSON formats ASCII-escaped as its MSG; CEF as its MSG (with a BOM
 * when it is not ASCII).
 */
export const syslogRecord = (format: Format, stored: StoredEvent, context: FormatContext): string =>
  format === "syslog"
    ? Syslog.format(stored, context)
    : Syslog.wrap(stored, context, format === "cef" ? Cef.format(stored, context) : toAscii(record(format, stored, context)))
