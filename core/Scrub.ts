/**
 * The scrubber every operational log line and every human line of the hub and the agent goes through: secrets
 * (API keys, agent tokens, share codes, link tokens, bearer values) are replaced by a marker, by their shape and by
 * the set of secrets this process knows. The one-time display of a new secret does not go through it.
 */
import { apiKeyPrefix } from "./Secrets.ts"

/** What a scrubbed secret reads as. */
export const REDACTED = "[redacted]"

/**
 * Secrets recognised by their shape. An API key and a share code keep their prefix (`pc_`/`sh_` and 6 characters,
 * what listings show); an agent token is 64 lowercase hex characters and a link token 40, so a SHA-256 or SHA-1 in
 * hex is scrubbed too (a log line never needs one in full); credentials in headers, URLs (`user:password@`) and query parameters named like secrets lose their value.
 */
const SHAPES: ReadonlyArray<readonly [RegExp, (match: string, ...groups: Array<string>) => string]> = [
  [/pc_[0-9A-Za-z]{32,}/g, (key) => `${apiKeyPrefix(key)}…${REDACTED}`],
  [/sh_[0-9A-Za-z]{32}/g, (code) => `${code.slice(0, 9)}…${REDACTED}`],
  // Agent tokens (64 hex) and link tokens (40 hex, also the first label of a link's host name).
  [/(?<![0-9A-Fa-f])(?:[0-9a-f]{64}|[0-9a-f]{40})(?![0-9A-Fa-f])/g, () => REDACTED],
  [/\b(Bearer|Basic)\s+[^\s"',;]+/gi, (_, scheme) => `${scheme} ${REDACTED}`],
  [/(\b[a-z][a-z0-9+.-]*:\/\/[^\s/:@"']+):[^\s/@"']+@/gi, (_, user) => `${user}:${REDACTED}@`],
  [/([?&](?:token|code|key|api_key|apikey|secret|password|access_token)=)[^\s&#"']+/gi, (_, name) => `${name}${REDACTED}`]
]

/** Known secrets shorter than this are not looked for (a short string would match by chance in ordinary text). */
const MIN_KNOWN = 12

/** The secrets this process holds (its agent token, the API key it was given, the keys it displayed once). */
const known = new Set<string>()

/** Adds `secret` to the set every later line is scrubbed of. */
export const remember = (secret: string): void => {
  if (secret.length >= MIN_KNOWN) known.add(secret)
}

/** `text` with every known secret and every secret-shaped value replaced. */
export const scrub = (text: string): string => {
  let out = text
  for (const secret of known) if (out.includes(secret)) out = out.split(secret).join(REDACTED)
  for (const [shape, replace] of SHAPES) out = out.replace(shape, replace as (match: string) => string)
  return out
}
