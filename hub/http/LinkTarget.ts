/**
 * Where a public-link request goes, read from the request alone: the token (from `/l/TOKEN/...` or, with a link domain,
 * from the Host `TOKEN.<domain>`), the path below it and the query; and the headers forwarded to the service
 * (hop-by-hop ones dropped, `X-Forwarded-For`/`-Proto`/`-Host` set). Pure.
 */
import type * as Http from "node:http"

/** The URL prefix of links on the hub's own host. */
export const PREFIX = "/l/"

/** A request's link token, the path below the link (not yet normalised) and its query (without `?`, may be empty). */
export interface Target {
  readonly token: string
  readonly path: string
  readonly query: string | undefined
}

/** The request's Host without its port, lowercased. */
const hostOf = (request: Http.IncomingMessage): string =>
  (request.headers.host ?? "").replace(/:\d*$/, "").toLowerCase()

/** Whether `request` is a link request: under `/l/`, or to a subdomain of `linkDomain`. */
export const isLinkRequest = (request: Http.IncomingMessage, linkDomain: string | undefined): boolean =>
  (request.url ?? "").startsWith(PREFIX) || (linkDomain !== undefined && hostOf(request).endsWith(`.${linkDomain}`))

/** The target of a link request (`isLinkRequest`). */
export const parse = (request: Http.IncomingMessage, linkDomain: string | undefined): Target => {
  const url = request.url ?? "/"
  const host = hostOf(request)
  let token: string
  let rest: string
  if (linkDomain !== undefined && host.endsWith(`.${linkDomain}`)) {
    token = host.slice(0, -(linkDomain.length + 1))
    rest = url
  } else {
    const after = url.slice(PREFIX.length)
    const end = after.search(/[/?]/)
    token = end === -1 ? after : after.slice(0, end)
    rest = end === -1 ? "" : after.slice(end)
  }
  const q = rest.indexOf("?")
  const path = q === -1 ? rest : rest.slice(0, q)
  return { token, path: path === "" ? "/" : path, query: q === -1 ? undefined : rest.slice(q + 1) }
}

/** Headers that describe one hop and are never forwarded (RFC 9110 §7.6.1), besides those `Connection` names. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "x-forwarded-for",
  "x-forwarded-proto",
  "x-forwarded-host"
])

/**
 * Headers that frame the message or name its target: `Connection` may not nominate them for removal. A client that
 * sent `Connection: Content-Length` with a body would otherwise have the body forwarded unframed on a pooled
 * connection, where the service reads it as a second request (request smuggling).
 */
const NEVER_NOMINATED = new Set(["content-length", "host"])

/**
 * Forwarding headers a client may send but only the hub sets: the service must never take the client's word for its
 * address (`Forwarded`, `X-Real-IP`) any more than for `X-Forwarded-For`.
 */
const CLIENT_FORWARDING = new Set(["forwarded", "x-real-ip", "x-client-ip", "true-client-ip"])

/** `headers` without the hop-by-hop ones (and those its `Connection` names), as a list of raw pairs. */
export const endToEnd = (
  rawHeaders: ReadonlyArray<string>,
  options: { readonly keepUpgrade?: boolean; readonly keepTrailer?: boolean } = {}
): Array<[string, string]> => {
  const named = new Set<string>()
  for (let i = 0; i < rawHeaders.length; i += 2) {
    // Only a name of ten characters can be `Connection`: the others are not lowercased here.
    if (rawHeaders[i]!.length === 10 && rawHeaders[i]!.toLowerCase() === "connection") {
      for (const token of rawHeaders[i + 1]!.split(",")) {
        const name = token.trim().toLowerCase()
        if (!NEVER_NOMINATED.has(name)) named.add(name)
      }
    }
  }
  const out: Array<[string, string]> = []
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase()
    const keep = (options.keepUpgrade && (name === "upgrade" || name === "connection")) ||
      (options.keepTrailer && name === "trailer")
    if (!keep && (HOP_BY_HOP.has(name) || named.has(name))) continue
    out.push([rawHeaders[i]!, rawHeaders[i + 1]!])
  }
  return out
}

/**
 * Whether a link request came on the hub's own host (`/l/TOKEN/…`) rather than its own subdomain of `--link-domain`.
 * There every link of every workspace shares one origin with the hub's API and its console: the client's cookies
 * (the console's session among them) are not forwarded, the service's `Set-Cookie` is dropped, and its pages are
 * sandboxed into an opaque origin, so that no tenant's page can read or plant anything in the hub's origin. A link
 * served under `--link-domain` has an origin of its own and passes cookies both ways.
 */
export const onHubOrigin = (request: Http.IncomingMessage, linkDomain: string | undefined): boolean =>
  !(linkDomain !== undefined && hostOf(request).endsWith(`.${linkDomain}`))

/** The sandbox a page served through a link on the hub's own origin runs in: scripts, forms, no origin of its own. */
export const SANDBOX = "sandbox allow-scripts allow-forms allow-popups allow-downloads allow-modals"

/** The headers of the service's answer sent back to the client (see `onHubOrigin`). */
export const answerHeaders = (rawHeaders: ReadonlyArray<string>, hubOrigin: boolean): Array<[string, string]> => {
  const headers = endToEnd(rawHeaders, { keepTrailer: true })
  if (!hubOrigin) return headers
  const kept = headers.filter(([name]) => name.toLowerCase() !== "set-cookie")
  kept.push(["Content-Security-Policy", SANDBOX])
  return kept
}

/**
 * The headers forwarded to the service: the end-to-end ones, and the client's address, scheme and host. A request
 * whose body came chunked goes on chunked (`Transfer-Encoding` is hop-by-hop, but without it node's client sends the
 * body of a GET, HEAD, DELETE or OPTIONS unframed on the pooled connection, where the service would read it as a
 * second request).
 */
export const forwardHeaders = (
  request: Http.IncomingMessage,
  client: { readonly ip: string; readonly proto: "http" | "https" },
  upgrade: boolean,
  hubOrigin = false
): Array<[string, string]> => {
  const headers = endToEnd(request.rawHeaders, { keepUpgrade: upgrade })
    .filter(([name]) => !CLIENT_FORWARDING.has(name.toLowerCase()) && !(hubOrigin && name.toLowerCase() === "cookie"))
  if (request.headers["transfer-encoding"] !== undefined) headers.push(["Transfer-Encoding", "chunked"])
  headers.push(["X-Forwarded-For", client.ip], ["X-Forwarded-Proto", client.proto])
  if (request.headers.host) headers.push(["X-Forwarded-Host", request.headers.host])
  return headers
}

/** Flattens header pairs for node's `headers` option (repeated names keep every value). */
export const flatten = (pairs: ReadonlyArray<readonly [string, string]>): Array<string> => {
  // A loop, not flatMap: a pair's array per header was 1.1% of the hub's CPU at 32 clients.
  const out: Array<string> = new Array(pairs.length * 2)
  for (let i = 0; i < pairs.length; i++) {
    out[2 * i] = pairs[i]![0]
    out[2 * i + 1] = pairs[i]![1]
  }
  return out
}
