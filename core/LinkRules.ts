/**
 * The rules of a public link, pure: its token (lowercase hex, so that it survives a Host header), the options of
 * `connect link create` (expiry, methods, path prefixes, rate limit) parsed and checked the same way by the CLI and
 * the hub, and the request path a link forwards: normalised, refused when it cannot be (encoded slashes or dots, NUL,
 * a backslash, an empty segment, a dot segment above the root), and matched against the prefixes only once normalised.
 */
import { randomBytes } from "node:crypto"
import { Either } from "effect"
import type { HttpMethod } from "./Events.ts"

/** A new link token: 20 random bytes as 40 lowercase hex characters (160 bits; one DNS label for --link-domain). */
export const generateLinkToken = (): string => randomBytes(20).toString("hex")

/** Whether `s` has the shape of a link token (says nothing of whether it exists). */
export const looksLikeLinkToken = (s: string): boolean => /^[0-9a-f]{40}$/.test(s)

/** The methods a link allows when none are given. */
export const DEFAULT_METHODS: ReadonlyArray<HttpMethod> = ["GET", "HEAD"]
/** The path prefixes a link allows when none are given: everything. */
export const DEFAULT_PATHS: ReadonlyArray<string> = ["/"]
/** Requests per minute per client address when no limit is given. */
export const DEFAULT_RATE_PER_MINUTE = 600
/** Lifetime of a link when none is given, in ms (30 days). */
export const DEFAULT_EXPIRES_MS = 30 * 86_400_000
/** Longest lifetime a link may have (365 days). */
export const MAX_EXPIRES_MS = 365 * 86_400_000
/** Most path prefixes one link takes, and the longest one. */
export const MAX_PATHS = 32
export const MAX_PATH_LENGTH = 256

const METHODS: ReadonlyArray<HttpMethod> = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
const UNITS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 }

/** `30d`, `12h`, `90m`, `45s` or `2w` as ms, at most 365 days; else why not. */
export const parseExpires = (text: string): Either.Either<number, string> => {
  const m = /^(\d{1,6})([smhdw])$/.exec(text.trim())
  if (!m) return Either.left(`--expires ${JSON.stringify(text.slice(0, 40))}: expected a number and a unit, e.g. 30d, 12h, 90m`)
  const ms = Number(m[1]) * UNITS[m[2]!]!
  if (ms <= 0) return Either.left("--expires must be more than 0")
  if (ms > MAX_EXPIRES_MS) return Either.left("--expires is at most 365d")
  return Either.right(ms)
}

/** `GET,HEAD` as methods (case-insensitive, each once); else why not. */
export const parseMethods = (text: string): Either.Either<ReadonlyArray<HttpMethod>, string> => {
  const parts = text.split(",").map((p) => p.trim().toUpperCase()).filter((p) => p !== "")
  if (parts.length === 0) return Either.left("--methods needs at least one method, e.g. GET,HEAD")
  const out: Array<HttpMethod> = []
  for (const p of parts) {
    const method = METHODS.find((m) => m === p)
    if (!method) return Either.left(`--methods: ${JSON.stringify(p.slice(0, 20))} is not one of ${METHODS.join(", ")}`)
    if (!out.includes(method)) out.push(method)
  }
  return Either.right(out)
}

/** Methods as given to the API (each a known one, at least one). */
export const checkMethods = (methods: ReadonlyArray<string>): Either.Either<ReadonlyArray<HttpMethod>, string> =>
  methods.length === 0 || methods.length > METHODS.length ? Either.left("methods: 1 to 7 of " + METHODS.join(", ")) : parseMethods(methods.join(","))

/** One path prefix: absolute, already normal (no `..`, `.`, `//`, backslash or percent sign), at most 256 characters. */
export const checkPrefix = (prefix: string): Either.Either<string, string> => {
  const shown = JSON.stringify(prefix.slice(0, 60))
  if (prefix.length > MAX_PATH_LENGTH) return Either.left(`path ${shown}…: at most ${MAX_PATH_LENGTH} characters`)
  if (!prefix.startsWith("/")) return Either.left(`path ${shown} must start with /`)
  if (/[\u0000-\u0020\u007f\\%?#]/.test(prefix)) {
    return Either.left(`path ${shown} may not contain spaces, control characters, \\, %, ? or #`)
  }
  const segments = prefix.split("/").slice(1)
  const body = prefix.endsWith("/") ? segments.slice(0, -1) : segments
  if (body.some((s) => s === "" || s === "." || s === "..")) {
    return Either.left(`path ${shown} must be normal: no //, . or .. segments`)
  }
  return Either.right(prefix.length > 1 && prefix.endsWith("/") ? prefix.slice(0, -1) : prefix)
}

/** `/api/v1,/health` as path prefixes; else why not. */
export const parsePaths = (text: string): Either.Either<ReadonlyArray<string>, string> =>
  checkPaths(text.split(",").map((p) => p.trim()).filter((p) => p !== ""))

/** Path prefixes as given to the API: 1 to 32, each `checkPrefix`. */
export const checkPaths = (paths: ReadonlyArray<string>): Either.Either<ReadonlyArray<string>, string> => {
  if (paths.length === 0) return Either.left("--paths needs at least one path, e.g. /api/v1,/health")
  if (paths.length > MAX_PATHS) return Either.left(`--paths takes at most ${MAX_PATHS} prefixes`)
  const out: Array<string> = []
  for (const p of paths) {
    const checked = checkPrefix(p)
    if (Either.isLeft(checked)) return Either.left(`--paths: ${checked.left}`)
    if (!out.includes(checked.right)) out.push(checked.right)
  }
  return Either.right(out)
}

/** `100/min`, `10/s` or `1000/hour` as requests per minute (whole, at least 1, at most 1,000,000); else why not. */
export const parseRate = (text: string): Either.Either<number, string> => {
  const m = /^(\d{1,9})\s*\/\s*(s|sec|second|m|min|minute|h|hour)$/i.exec(text.trim())
  if (!m) return Either.left(`--rate-limit ${JSON.stringify(text.slice(0, 40))}: expected N/s, N/min or N/hour, e.g. 100/min`)
  const n = Number(m[1])
  const unit = m[2]!.toLowerCase()
  const perMinute = unit.startsWith("s") ? n * 60 : unit.startsWith("h") ? n / 60 : n
  if (!Number.isInteger(perMinute) || perMinute < 1) {
    return Either.left("--rate-limit must come to a whole number of requests per minute, at least 1")
  }
  if (perMinute > 1_000_000) return Either.left("--rate-limit is at most 1000000/min")
  return Either.right(perMinute)
}

/** Why a request path is refused before any rule is checked (400). */
export type BadPath = { readonly _tag: "BadPath"; readonly message: string }

const bad = (message: string): Either.Either<never, BadPath> => Either.left({ _tag: "BadPath", message })

/**
 * The request target's path (without the query) normalised: dot segments resolved, everything else byte for byte.
 * Refused: not absolute, longer than 8 KiB, a backslash, a control character, an empty segment (`//`), a malformed or
 * encoded `%2e`, `%2f`, `%5c` or `%00`, a `;` (raw or `%3b`), an encoded `%`, percent-encoding that is not UTF-8, a dot
 * segment that climbs above the root.
 */
export const normalisePath = (raw: string): Either.Either<string, BadPath> => {
  if (!raw.startsWith("/")) return bad("the path must start with /")
  if (raw.length > 8192) return bad("the path is longer than 8192 characters")
  if (raw.includes("\\")) return bad("the path contains a backslash")
  if (/[\u0000-\u001f\u007f]/.test(raw)) return bad("the path contains a control character")
  if (/%(?![0-9a-fA-F]{2})/.test(raw)) return bad("the path has a malformed percent-encoding")
  if (/%(2e|2f|5c|00)/i.test(raw)) return bad("the path encodes a dot, a slash, a backslash or NUL")
  // What servers behind a link read differently from this check: a `;` parameter (Tomcat takes `/api/..;/admin` for
  // `/admin`), an encoded percent sign (decoded twice, `%252e` is a dot), an encoded `;`, and percent-encoded bytes
  // that are not UTF-8 (an overlong `%c0%ae` is a dot to some decoders).
  if (raw.includes(";") || /%3b/i.test(raw)) return bad("the path contains a ; parameter")
  if (/%25/.test(raw)) return bad("the path encodes a percent sign")
  try {
    decodeURIComponent(raw)
  } catch {
    return bad("the path's percent-encoding is not UTF-8")
  }
  if (raw === "/") return Either.right(raw)
  const trailing = raw.length > 1 && raw.endsWith("/")
  const segments = raw.split("/").slice(1)
  if (trailing) segments.pop()
  const out: Array<string> = []
  for (const segment of segments) {
    if (segment === "") return bad("the path has an empty segment (//)")
    if (segment === ".") continue
    if (segment === "..") {
      if (out.length === 0) return bad("the path climbs above the root")
      out.pop()
      continue
    }
    out.push(segment)
  }
  const path = "/" + out.join("/")
  return Either.right(trailing && out.length > 0 ? path + "/" : path)
}

/** Whether normalised `path` is `prefix` or below it (`/api` covers `/api` and `/api/x`, not `/apix`). */
export const underPrefix = (path: string, prefix: string): boolean =>
  prefix === "/" || path === prefix || path.startsWith(prefix + "/")

/** Whether normalised `path` is under one of `prefixes`. */
export const allowedPath = (path: string, prefixes: ReadonlyArray<string>): boolean =>
  prefixes.some((p) => underPrefix(path, p))
