/**
 * Text that comes from a peer (an agent's version or label, a user agent, a requested service name, a reason) made
 * safe to record: Postgres refuses U+0000 in text and jsonb, and a lone surrogate cannot be encoded as UTF-8, so
 * either one would make the append of the very event that records the peer fail. Both become U+FFFD, and the text
 * is cut to a number of code points (never between the two halves of a surrogate pair).
 */

/** The replacement character every unrecordable code unit becomes. */
export const REPLACEMENT = "\uFFFD"

/** Caps for text a peer supplies only for the record, in code points. */
export const CAPS = {
  /** Agent software version, transport names and other short tokens. */
  version: 64,
  /** Agent label (a host name) and user agents. */
  label: 128,
  /** A name asked for (service names are at most 63 characters; more is recorded cut). */
  name: 128,
  /** Free-text reasons and messages. */
  reason: 256
} as const

// A NUL, a high surrogate not followed by a low one, or a low surrogate not preceded by a high one.
const UNRECORDABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g

/** True when `text` has no U+0000 and no lone surrogate. */
export const isRecordable = (text: string): boolean => {
  UNRECORDABLE.lastIndex = 0
  return !UNRECORDABLE.test(text)
}

/**
 * `text` with U+0000 and lone surrogates replaced by U+FFFD and cut to at most `maxCodePoints` code points; a cut
 * text ends in "…" (counted in the cap). Anything that is not a string is recorded as its type in brackets.
 */
export const sanitize = (text: unknown, maxCodePoints: number): string => {
  if (typeof text !== "string") return `[${text === null ? "null" : typeof text}]`
  // More than 2 × max code units is more than max code points: cut before the regex runs over a 1 MB string. The cut
  // may split a pair at its very end; that half becomes U+FFFD and falls beyond the cap anyway.
  const long = text.length > maxCodePoints * 2
  const s = (long ? text.slice(0, maxCodePoints * 2 + 1) : text).replace(UNRECORDABLE, REPLACEMENT)
  if (!long && s.length <= maxCodePoints) return s
  const points = Array.from(s)
  if (!long && points.length <= maxCodePoints) return s
  return points.slice(0, Math.max(0, maxCodePoints - 1)).join("") + "…"
}

/** `text` with U+0000 and lone surrogates replaced by U+FFFD, uncut (the same string when it is recordable). */
export const replaceUnrecordable = (text: string): string =>
  isRecordable(text) ? text : text.replace(UNRECORDABLE, REPLACEMENT)
