/**
 * `connect audit --hub URL`: the audit query through a hub's API (`GET /v1/audit/events`, core/HubApi.ts) with
 * `HttpApiClient`, paged with `before` up to the limit asked for, and `--stats` (`GET /v1/audit/stats`). Every failure is one `AuditRemoteError` a user can act
 * on: the key refused (401), a credential of the wrong kind or beyond the key's scope (403), a filter the hub refuses
 * (400), a hub that does not
 * answer or serves no audit API.
 */
import * as Net from "node:net"
import * as HttpApiClient from "@effect/platform/HttpApiClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { Effect, ParseResult, Schema } from "effect"
import * as HubApi from "../core/HubApi.ts"
import * as HubTls from "../transports/HubTls.ts"
import type { RawFilters } from "./Query.ts"
import type { RawStatsOptions } from "./Stats.ts"

/** Why reading through the hub failed. */
export class AuditRemoteError extends Schema.TaggedError<AuditRemoteError>()("AuditRemoteError", {
  /**
   * "Refused": the hub answered with an error (see `status`); "Invalid": a bad `--hub` URL; "Unreachable": no answer;
   * "BadResponse": an answer that is not the API's.
   */
  reason: Schema.Literal("Refused", "Invalid", "Unreachable", "BadResponse"),
  message: Schema.String,
  status: Schema.optional(Schema.Number)
}) {}

/** How long one page may take before the hub counts as unreachable. */
const TIMEOUT = "30 seconds"

const isLoopback = (host: string): boolean => {
  const h = host.replace(/^\[|\]$/g, "")
  return h === "localhost" || (Net.isIPv4(h) && h.startsWith("127.")) || h === "::1"
}

/**
 * The hub URL checked: `http(s)://host[:port]` without a trailing slash. Plain HTTP only to a loopback address or
 * with `CONNECT_ALLOW_INSECURE=true`: the API key would cross the network in the clear.
 */
export const checkHubUrl = (raw: string, env: NodeJS.ProcessEnv = process.env): Effect.Effect<string, AuditRemoteError> => {
  const invalid = (message: string) => Effect.fail(new AuditRemoteError({ reason: "Invalid", message }))
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    return invalid(`--hub ${raw} is not a URL (expected https://host[:port])`)
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return invalid(`--hub ${raw}: expected an http:// or https:// URL`)
  if (url.protocol === "http:" && !isLoopback(url.hostname) && env.CONNECT_ALLOW_INSECURE !== "true") {
    return invalid(
      `refusing plain http:// to ${url.host}: the API key would cross the network unencrypted. Use https://, or set ` +
        "CONNECT_ALLOW_INSECURE=true for a trusted network."
    )
  }
  return Effect.succeed(url.toString().replace(/\/+$/, ""))
}

/** What a refusal means for the user, by status. */
const refusal = (status: number, message: string): string => {
  switch (status) {
    case 401:
      return `the hub refused the API key (401: ${message}); check --api-key or CONNECT_API_KEY`
    case 403:
      return `the hub refused the request (403: ${message})`
    case 404:
      return `the hub serves no audit API at this address (404: ${message})`
    case 429:
      return `too many refused credentials from this address (429: ${message}); wait and try again`
    default:
      return `the hub refused the query (${status}: ${message})`
  }
}

const refused = (status: number, message: string) =>
  new AuditRemoteError({ reason: "Refused", status, message: refusal(status, message) })

/** A failure of one call as an `AuditRemoteError`. */
const failure = (hubUrl: string, trust: HubTls.TrustShape) =>
(
  error: { readonly _tag: string; readonly message: string } | HttpClientError.HttpClientError | ParseResult.ParseError
): Effect.Effect<never, AuditRemoteError> => {
  if (error instanceof HttpClientError.RequestError) {
    // The socket's error (ECONNREFUSED, ENOTFOUND, a certificate this machine does not trust) is the cause.
    const detail = HubTls.describe(error.cause ?? error, trust)
    return new AuditRemoteError({ reason: "Unreachable", message: `cannot reach the hub at ${hubUrl}: ${detail}` })
  }
  if (error instanceof HttpClientError.ResponseError) {
    // A status the declaration does not list (a proxy's 502, 405, 431): the API's error body if there is one.
    const response = error.response
    return Effect.flatMap(Effect.orElseSucceed(response.json, () => undefined), (json) => {
      const body = (json as { error?: { message?: unknown } } | undefined)?.error
      const message = typeof body?.message === "string" ? body.message : `HTTP ${response.status}`
      return response.status >= 400
        ? refused(response.status, message)
        : new AuditRemoteError({ reason: "BadResponse", message: `unexpected answer from the hub at ${hubUrl}` })
    })
  }
  if (ParseResult.isParseError(error)) {
    return new AuditRemoteError({ reason: "BadResponse", message: `unexpected answer from the hub at ${hubUrl}` })
  }
  return refused(HubApi.statusOf(error._tag) ?? 0, error.message)
}

/** The filters as the query parameters of the API (as typed: the hub checks them by the CLI's rules). */
const paramsOf = (filters: RawFilters) => {
  const out: Record<string, string> = {}
  for (const key of ["since", "until", "type", "workspace", "agent", "service", "outcome", "ip"] as const) {
    const value = filters[key]
    if (value !== undefined) out[key] = value
  }
  return out
}

/** The API client for the hub at `hubUrl`, every request with `apiKey`. */
const makeClient = (hubUrl: string, apiKey: string) =>
  HttpApiClient.make(HubApi.HubApi, {
    baseUrl: hubUrl,
    transformClient: HttpClient.mapRequest((request) =>
      HttpClientRequest.acceptJson(HttpClientRequest.bearerToken(request, apiKey))
    )
  })

/** A call through the API client for the hub at `hubUrl` (checked) with `apiKey`; every failure an `AuditRemoteError`. */
const call = <A, E extends Parameters<ReturnType<typeof failure>>[0] | AuditRemoteError>(
  hubUrl: string,
  apiKey: string,
  use: (client: Effect.Effect.Success<ReturnType<typeof makeClient>>) => Effect.Effect<A, E, HttpClient.HttpClient>
): Effect.Effect<A, AuditRemoteError> =>
  // The hub verified with the CAs of the command's HubTls.Trust (`--ca-cert`, CONNECT_CA_CERT) besides the system's.
  Effect.flatMap(HubTls.Trust, (trust) =>
    Effect.flatMap(makeClient(hubUrl, apiKey), use).pipe(
      Effect.catchAll((e) => (e instanceof AuditRemoteError ? Effect.fail(e) : failure(hubUrl, trust)(e))),
      Effect.provide(HubTls.httpClientLayer(trust))
    ))

/** One request, given up after `TIMEOUT` as a hub that does not answer. */
const timed = (hubUrl: string) => <A, E, R>(request: Effect.Effect<A, E, R>) =>
  request.pipe(
    Effect.timeoutFail({
      duration: TIMEOUT,
      onTimeout: () => new AuditRemoteError({ reason: "Unreachable", message: `cannot reach the hub at ${hubUrl}: no answer in 30 s` })
    })
  )

/**
 * The newest `limit` events that pass `filters` on the hub at `hubUrl` (checked), read with `apiKey`: pages of at most
 * 1,000 (each page one query the hub records), newest first.
 */
export const query = (
  hubUrl: string,
  apiKey: string,
  filters: RawFilters,
  limit: number
): Effect.Effect<ReadonlyArray<HubApi.AuditEvent>, AuditRemoteError> =>
  call(hubUrl, apiKey, (client) =>
    Effect.gen(function*() {
      const out: Array<HubApi.AuditEvent> = []
      let before: number | undefined
      while (out.length < limit) {
        const page = yield* timed(hubUrl)(client.audit.events({
          urlParams: {
            ...paramsOf(filters),
            limit: Math.min(limit - out.length, HubApi.AUDIT_PAGE_LIMIT),
            ...(before === undefined ? {} : { before })
          }
        }))
        out.push(...page.events)
        if (page.next === null) break
        before = page.next
      }
      return out
    }))

/**
 * The stats for `params` (as typed: the hub checks them by the CLI's rules) of the hub at `hubUrl` (checked), read with
 * `apiKey` (`GET /v1/audit/stats`, one read the hub records): what the key may see, from the hub's rollups as of the
 * position they reflect.
 */
export const stats = (hubUrl: string, apiKey: string, params: RawStatsOptions): Effect.Effect<HubApi.AuditStats, AuditRemoteError> =>
  call(hubUrl, apiKey, (client) =>
    timed(hubUrl)(client.audit.stats({
      urlParams: {
        ...(params.since === undefined ? {} : { since: params.since }),
        ...(params.until === undefined ? {} : { until: params.until }),
        ...(params.workspace === undefined ? {} : { workspace: params.workspace }),
        ...(params.by === undefined ? {} : { by: params.by }),
        limit: params.limit,
        ...(params.reveal ? { reveal: "true" as const } : {})
      }
    })))
