/**
 * The agent's client of the hub's API (declared in core/HubApi.ts, called with `HttpApiClient`): provisioning with an
 * API key, token rotation and the service list; plus the hub URL rules (TLS unless loopback, the gateway address).
 */
import * as Dns from "node:dns"
import * as Net from "node:net"
import * as HttpApiClient from "@effect/platform/HttpApiClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { Effect, ParseResult, Schema } from "effect"
import * as HubApi from "../core/HubApi.ts"
import * as HubTls from "../transports/HubTls.ts"

/** Why a hub API call failed. */
export class HubApiError extends Schema.TaggedError<HubApiError>()("HubApiError", {
  /**
   * "Unreachable": no HTTP answer (the request did not get through); "Timeout": no answer in time, though the request
   * may have reached the hub, so a change it asked for may still be recorded; "Refused": an error answer (see `code`);
   * "BadResponse": not the expected JSON; "Invalid": not sent, the request breaks the API's rules.
   */
  reason: Schema.Literal("Unreachable", "Timeout", "Refused", "BadResponse", "Invalid"),
  message: Schema.String,
  status: Schema.optional(Schema.Number),
  /** The hub's error code (`Unauthorized`, `Revoked`, ...). */
  code: Schema.optional(Schema.String)
}) {}

/** The hub URL is unusable (bad syntax, or plain HTTP to a non-loopback host without `CONNECT_ALLOW_INSECURE`). */
export class HubUrlError extends Schema.TaggedError<HubUrlError>()("HubUrlError", {
  message: Schema.String
}) {}

/** Resolves a host name to every address it has (IP literals resolve to themselves). */
export type Resolve = (host: string) => Effect.Effect<ReadonlyArray<string>, HubUrlError>

/** `dns.lookup(host, { all: true })`: what the agent's own connections to the hub will resolve. */
export const systemResolve: Resolve = (host) =>
  Effect.async<ReadonlyArray<string>, HubUrlError>((resume) => {
    Dns.lookup(host, { all: true, verbatim: true }, (error, addresses) =>
      resume(
        error
          ? Effect.fail(new HubUrlError({ message: `cannot resolve the hub's host ${host}: ${error.code ?? error.message}` }))
          : Effect.succeed(addresses.map((a) => a.address))
      ))
  })

const loopback = new Net.BlockList()
loopback.addSubnet("127.0.0.0", 8, "ipv4")
loopback.addAddress("::1", "ipv6")

const isLoopbackAddress = (address: string): boolean => {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1]
  const ip = mapped ?? address
  const family = Net.isIP(ip)
  return family !== 0 && loopback.check(ip, family === 4 ? "ipv4" : "ipv6")
}

// The name says nothing: `evil.localhost` is whatever the resolver answers, so every resolved address must be loopback.
const resolvesToLoopback = (hostname: string, resolve: Resolve): Effect.Effect<boolean, HubUrlError> => {
  const host = hostname.replace(/^\[|\]$/g, "")
  if (Net.isIP(host) !== 0) return Effect.succeed(isLoopbackAddress(host))
  return Effect.map(resolve(host), (addresses) => addresses.length > 0 && addresses.every(isLoopbackAddress))
}

/**
 * Checks a hub URL (`http(s)://host[:port]`) and returns it without a trailing slash. Plain HTTP is accepted only
 * when every address the host resolves to is loopback (127.0.0.0/8, ::1), or with `CONNECT_ALLOW_INSECURE=true`:
 * the token crosses the network in the clear otherwise.
 */
export const checkHubUrl = (
  raw: string,
  env: NodeJS.ProcessEnv = process.env,
  resolve: Resolve = systemResolve
): Effect.Effect<string, HubUrlError> =>
  Effect.gen(function*() {
    let url: URL
    try {
      url = new URL(raw)
    } catch {
      return yield* new HubUrlError({ message: `--hub ${raw} is not a URL (expected https://host[:port])` })
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      return yield* new HubUrlError({ message: `--hub ${raw}: expected an http:// or https:// URL` })
    }
    const insecure = url.protocol === "http:" && env.CONNECT_ALLOW_INSECURE !== "true"
    if (insecure && !(yield* resolvesToLoopback(url.hostname, resolve).pipe(Effect.orElseSucceed(() => false)))) {
      return yield* new HubUrlError({
        message: `refusing plain http:// to ${url.host}: it does not resolve to loopback only, so the agent token ` +
          "would cross the network unencrypted. Use https://, or set CONNECT_ALLOW_INSECURE=true for a trusted network."
      })
    }
    return url.toString().replace(/\/+$/, "")
  })

/** The agent gateway of a hub: `http://h:p` → `ws://h:p/v1/agent`, `https` → `wss`. */
export const gatewayUrl = (hubUrl: string): string => {
  const url = new URL(hubUrl)
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:"
  url.pathname = `${url.pathname.replace(/\/+$/, "")}/v1/agent`
  return url.toString()
}

/** A client of the hub's API at `hubUrl` presenting `secret` as its bearer credential. */
const clientOf = (hubUrl: string, secret: string) =>
  HttpApiClient.make(HubApi.HubApi, {
    baseUrl: hubUrl,
    transformClient: HttpClient.mapRequest((request) =>
      HttpClientRequest.acceptJson(HttpClientRequest.bearerToken(request, secret))
    )
  })

/** A client of the hub's API. */
type Client = Effect.Effect.Success<ReturnType<typeof clientOf>>

/** An error answer the API declares (core/HubApi.ts): its tag is the answer's code. */
interface Answer {
  readonly _tag: string
  readonly message: string
}

/** `METHOD /path` of an endpoint, naming it in messages. */
const route = (endpoint: { readonly method: string; readonly path: string }) => `${endpoint.method} ${endpoint.path}`

/** An answer with a status the declaration does not list (405, a proxy's 502, an older hub's 404), read as JSON. */
const undeclaredAnswer = (what: string, response: HttpClientResponse.HttpClientResponse) =>
  Effect.flatMap(Effect.orElseSucceed(response.json, () => undefined), (json) => {
    if (response.status < 400) {
      const message = `${what}: unexpected answer from the hub`
      return new HubApiError({ reason: "BadResponse", status: response.status, message })
    }
    const error = (json as { error?: { code?: unknown; message?: unknown } } | undefined)?.error
    const code = typeof error?.code === "string" ? error.code : undefined
    const message = typeof error?.message === "string" ? error.message : `HTTP ${response.status}`
    return new HubApiError({
      reason: "Refused",
      status: response.status,
      message: `${what}: ${message}`,
      ...(code === undefined ? {} : { code })
    })
  })

/** Why a call failed, as the agent reports it. */
const failure = (hubUrl: string, what: string, trust: HubTls.TrustShape) =>
(
  error: Answer | HttpClientError.HttpClientError | ParseResult.ParseError
): Effect.Effect<never, HubApiError> => {
  if (error instanceof HttpClientError.RequestError) {
    // The socket's error (ECONNREFUSED, ENOTFOUND, a certificate this machine does not trust) is the cause.
    const detail = HubTls.describe(error.cause ?? error, trust)
    return new HubApiError({ reason: "Unreachable", message: `cannot reach the hub at ${hubUrl}: ${detail}` })
  }
  if (error instanceof HttpClientError.ResponseError) return undeclaredAnswer(what, error.response)
  if (ParseResult.isParseError(error)) {
    return new HubApiError({ reason: "BadResponse", message: `${what}: unexpected answer from the hub` })
  }
  const status = HubApi.statusOf(error._tag)
  return new HubApiError({
    reason: "Refused",
    message: `${what}: ${error.message}`,
    code: error._tag,
    ...(status === undefined ? {} : { status })
  })
}

/**
 * Calls `endpoint` of the hub at `hubUrl` with `secret`, verifying its certificate with the command's `HubTls.Trust`;
 * every failure is a `HubApiError`, no answer in 15 s too ("Timeout").
 */
const call = <A>(
  hubUrl: string,
  secret: string,
  endpoint: { readonly method: string; readonly path: string },
  request: (client: Client) => Effect.Effect<A, Answer | HttpClientError.HttpClientError | ParseResult.ParseError>
): Effect.Effect<A, HubApiError> =>
  Effect.flatMap(HubTls.Trust, (trust) =>
    Effect.flatMap(clientOf(hubUrl, secret), request).pipe(
      Effect.catchAll(failure(hubUrl, route(endpoint), trust)),
      Effect.timeoutFail({
        duration: "15 seconds",
        // Not "cannot reach": the request may have got there, and what it asked for may still be done.
        onTimeout: () =>
          new HubApiError({
            reason: "Timeout",
            message: `no answer from the hub at ${hubUrl} in 15 s; the request may have reached it, so what it asked for may still be done`
          })
      }),
      Effect.provide(HubTls.httpClientLayer(trust))
    ))

/** The endpoints this client calls (their method and path name them in messages). */
const endpoints = {
  provision: HubApi.Agents.endpoints.provision,
  rotate: HubApi.Agents.endpoints.rotate,
  services: HubApi.Services.endpoints.list,
  createLink: HubApi.Links.endpoints.create,
  listLinks: HubApi.Links.endpoints.list,
  revokeLink: HubApi.Links.endpoints.revoke
}

/**
 * `POST /v1/agents` with an API key: a new agent and its token (returned once), living `ttl` (`15m`, `7d`) or the
 * hub's default. A label that breaks the API's rule is refused here, without asking the hub.
 */
export const provision = (hubUrl: string, apiKey: string, label?: string, ttl?: string) =>
  Effect.gen(function*() {
    const request = { ...(label === undefined ? {} : { label }), ...(ttl === undefined ? {} : { ttl }) }
    const payload = yield* Schema.validate(HubApi.ProvisionRequest)(request).pipe(
      Effect.mapError((error) =>
        new HubApiError({
          reason: "Invalid",
          message: `${route(endpoints.provision)}: ${HubApi.describeIssues(error)}`
        })
      )
    )
    return yield* call(hubUrl, apiKey, endpoints.provision, (client) => client.agents.provision({ payload }))
  })

/** `POST /v1/agents/rotate` with the agent token: a new token; the old one stays valid until `oldValidUntil`. */
export const rotate = (hubUrl: string, token: string) =>
  call(hubUrl, token, endpoints.rotate, (client) => client.agents.rotate())

/** `GET /v1/services` with the agent token: the services of the agent's workspace. */
export const services = (hubUrl: string, token: string) =>
  call(hubUrl, token, endpoints.services, (client) => Effect.map(client.services.list(), (r) => r.services))

/** `POST /v1/links` with an API key: a public link onto a service; its token and URLs are in this answer only. */
export const createLink = (hubUrl: string, apiKey: string, payload: typeof HubApi.LinkCreateRequest.Type) =>
  call(hubUrl, apiKey, endpoints.createLink, (client) => client.links.create({ payload }))

/** `GET /v1/links` with an API key: the workspace's links, never their tokens. */
export const listLinks = (hubUrl: string, apiKey: string) =>
  call(hubUrl, apiKey, endpoints.listLinks, (client) => Effect.map(client.links.list(), (r) => r.links))

/** `POST /v1/links/:linkId/revoke` with an API key. */
export const revokeLink = (hubUrl: string, apiKey: string, linkId: string) =>
  call(hubUrl, apiKey, endpoints.revokeLink, (client) => client.links.revoke({ path: { linkId } }))

/** The share endpoints this client calls. */
const shareEndpoints = {
  create: HubApi.Shares.endpoints.create,
  list: HubApi.Shares.endpoints.list,
  revoke: HubApi.Shares.endpoints.revoke,
  join: HubApi.Shares.endpoints.join
}

/** `POST /v1/shares` with an API key: a share of services; its code is in this answer only. */
export const createShare = (hubUrl: string, apiKey: string, payload: typeof HubApi.ShareCreateRequest.Type) =>
  call(hubUrl, apiKey, shareEndpoints.create, (client) => client.shares.create({ payload }))

/** `GET /v1/shares` with an API key: the workspace's shares, never their codes. */
export const listShares = (hubUrl: string, apiKey: string) =>
  call(hubUrl, apiKey, shareEndpoints.list, (client) => Effect.map(client.shares.list(), (r) => r.shares))

/** `POST /v1/shares/:shareId/revoke` with an API key. */
export const revokeShare = (hubUrl: string, apiKey: string, shareId: string) =>
  call(hubUrl, apiKey, shareEndpoints.revoke, (client) => client.shares.revoke({ path: { shareId } }))

/** `POST /v1/shares/join` with the agent token: the agent takes a grant of the share's services. */
export const joinShare = (hubUrl: string, token: string, code: string) =>
  call(hubUrl, token, shareEndpoints.join, (client) => client.shares.join({ payload: { code } }))
