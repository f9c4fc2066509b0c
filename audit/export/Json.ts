/**
 * JSON text for the export formats: a small writer that can splice stored JSON text in verbatim (`RawJson`), the rule
 * for when stored text may be spliced, and an ASCII-only form for transports that would otherwise need a BOM.
 */

/** JSON text written as is by {@link stringify}: a payload exactly as the log stored it. */
export class RawJson {
  constructor(readonly text: string) {}
}

// A C0 control character (never raw in JSON text the log produces) or a lone surrogate (not encodable as UTF-8).
const Unsafe = /[\u0000-\u001f]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/**
 * Stored JSON text as a value to embed: the text itself when it parses and holds no control character or lone
 * surrogate (the jsonb text Postgres renders always qualifies, so the record carries the bytes the chain hashed);
 * otherwise the value re-serialized, or, if it does not parse at all, the text as a JSON string. A record never breaks.
 */
export const storedJson = (text: string): RawJson => {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return new RawJson(JSON.stringify(text))
  }
  return new RawJson(Unsafe.test(text) ? stringify(parsed) : text)
}

/**
 * JSON text of a value, without insignificant whitespace, keys in insertion order: `undefined` members are left out,
 * `RawJson` is spliced verbatim, a Date is its ISO string (null when invalid), a non-finite number or anything not JSON
 * is null. Strings are escaped as `JSON.stringify` does, which escapes lone surrogates, so the text is valid UTF-8.
 */
export const stringify = (value: unknown): string => {
  switch (typeof value) {
    case "string":
      return JSON.stringify(value)
    case "number":
      return Number.isFinite(value) ? String(value) : "null"
    case "boolean":
      return value ? "true" : "false"
    case "bigint":
      return value.toString()
    case "object": {
      if (value === null) return "null"
      if (value instanceof RawJson) return value.text
      if (value instanceof Date) return Number.isNaN(value.getTime()) ? "null" : JSON.stringify(value.toISOString())
      if (Array.isArray(value)) {
        let out = "["
        for (let i = 0; i < value.length; i++) out += (i > 0 ? "," : "") + stringify(value[i])
        return out + "]"
      }
      let out = "{"
      let first = true
      for (const key of Object.keys(value)) {
        const member = (value as Record<string, unknown>)[key]
        if (member === undefined) continue
        out += (first ? "" : ",") + JSON.stringify(key) + ":" + stringify(member)
        first = false
      }
      return out + "}"
    }
    default:
      return "null"
  }
}

/**
 * The same JSON text with every character outside printable ASCII written as a `\uXXXX` escape (valid JSON text
 * has them only inside strings, where the escape means the same character), so it can travel as RFC 5424 MSG-ANY.
 */
export const toAscii = (json: string): string =>
  json.replace(/[\u007f-\uffff]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"))
