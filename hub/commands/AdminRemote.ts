/**
 * `connect hub workspace|apikey|agent … --hub URL --api-key KEY`: the admin commands through a hub's API (the `admin`
 * group of core/HubApi.ts) with `HttpApiClient`, from any machine. Every failure is one `AdminRemoteError` that says
 * what to do next.
 */
import * as Net from "node:net"
import * as HttpApiClient from "@effect/platform/HttpApiClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { Effect, ParseResult, Schema } from "effect"
import * as HubApi from "../../core/HubApi.ts"
import * as HubTls from "../../transports/HubTls.ts"

/** Why an admin command through the hub failed. */
export class AdminRemoteError extends Schema.TaggedError<AdminRemoteError>()("AdminRemoteError", {
  /**
   * "Refused": the hub answered with an error (see `status`); "Invalid": a bad `--hub` URL or no key, nothing sent;
   * "Unreachable": no answer; "BadResponse": an answer that is not the API's.
   */
  reason: Schema.Literal("Refused", "Invalid", "Unreachable", "BadResponse"),
  message: Schema.String,
  status: Schema.optional(Schema.Number)
}) {}

/** How long one request may take before the hub counts as unreachable. */
const TIMEOUT = "30 seconds"

const isLoopback = (host: string): boolean => {
  const h = host.replace(/^\[|\]$/g, "")
  return h === "localhost" || (Net.isIPv4(h) && h.startsWith("127.")) || h === "::1"
}

/** Where and with what: the hub's URL (checked), the API key, and the CA its certificate is verified with. */
export interface Remote {
  readonly hubUrl: string
  readonly apiKey: string
  readonly trust: HubTls.TrustShape
}

/**
 * The hub URL checked (`http(s)://host[:port]`, no trailing slash) with its key: plain HTTP only to a loopback address
 * or with `CONNECT_ALLOW_INSECURE=true`, since the API key would cross the network in the clear.
 */
export const remote = (
  raw: string,
  apiKey: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
  caCert?: string
): Effect.Effect<Remote, AdminRemoteError | HubTls.CaCertError> => {
  const invalid = (message: string) => Effect.fail(new AdminRemoteError({ reason: "Invalid", message }))
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    return invalid(`--hub ${JSON.stringify(raw.slice(0, 200))} is not a URL (expected https://host[:port])`)
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return invalid(`--hub ${raw}: expected an http:// or https:// URL`)
  if (url.protocol === "http:" && !isLoopback(url.hostname) && env.CONNECT_ALLOW_INSECURE !== "true") {
    return invalid(
      `refusing plain http:// to ${url.host}: the API key would cross the network unencrypted. Use https://, or set ` +
        "CONNECT_ALLOW_INSECURE=true for a trusted network."
    )
  }
  if (apiKey === undefined || apiKey.trim() === "") {
    return invalid("--hub needs an API key: set CONNECT_API_KEY (or pass --api-key pc_…)")
  }
  const key = apiKey.trim()
  const hubUrl = url.toString().replace(/\/+$/, "")
  // --ca-cert, else CONNECT_CA_CERT: the CA of a hub whose certificate comes from a private CA.
  return Effect.map(HubTls.resolve(caCert, env), (trust) => ({ hubUrl, apiKey: key, trust }))
}

/** What a refusal means for the user, by status. */
const refusal = (status: number, message: string): string => {
  switch (status) {
    case 401:
      return `the hub refused the API key (401: ${message}); check --api-key or CONNECT_API_KEY`
    case 403:
      return `the hub refused the request (403: ${message}); use a key of that workspace, or an operator key`
    case 404:
      return `${message} (404); check the id (\`connect hub … list --hub …\` lists them)`
    case 429:
      return `too many refused credentials from this address (429: ${message}); wait and try again`
    case 503:
      return `the hub cannot reach its event log (503: ${message}); try again`
    default:
      return `the hub refused the request (${status}: ${message})`
  }
}

const refused = (status: number, message: string) =>
  new AdminRemoteError({ reason: "Refused", status, message: refusal(status, message) })

/** A failure of one call as an `AdminRemoteError`. */
const failure = (hubUrl: string, trust: HubTls.TrustShape) =>
(
  error: { readonly _tag: string; readonly message: string } | HttpClientError.HttpClientError | ParseResult.ParseError
): Effect.Effect<never, AdminRemoteError> => {
  if (error instanceof HttpClientError.RequestError) {
    // The socket's error (ECONNREFUSED, ENOTFOUND, a certificate this machine does not trust) is the cause.
    const detail = HubTls.describe(error.cause ?? error, trust)
    return new AdminRemoteError({
      reason: "Unreachable",
      message: `cannot reach the hub at ${hubUrl}: ${detail}; check --hub and that the hub runs`
    })
  }
  if (error instanceof HttpClientError.ResponseError) {
    // A status the declaration does not list (a proxy's 502, a 405 of an older hub): the API's error body if any.
    const response = error.response
    return Effect.flatMap(Effect.orElseSucceed(response.json, () => undefined), (json) => {
      const body = (json as { error?: { message?: unknown } } | undefined)?.error
      const message = typeof body?.message === "string" ? body.message : `HTTP ${response.status}`
      return response.status >= 400
        ? refused(response.status, message)
        : new AdminRemoteError({ reason: "BadResponse", message: `unexpected answer from the hub at ${hubUrl}` })
    })
  }
  if (ParseResult.isParseError(error)) {
    return new AdminRemoteError({ reason: "BadResponse", message: `unexpected answer from the hub at ${hubUrl}` })
  }
  return refused(HubApi.statusOf(error._tag) ?? 0, error.message)
}

const makeClient = (r: Remote) =>
  HttpApiClient.make(HubApi.HubApi, {
    baseUrl: r.hubUrl,
    transformClient: HttpClient.mapRequest((request) =>
      HttpClientRequest.acceptJson(HttpClientRequest.bearerToken(request, r.apiKey))
    )
  })

type Client = Effect.Effect.Success<ReturnType<typeof makeClient>>

/** One call through the API client, given up after `TIMEOUT`; every failure an `AdminRemoteError`. */
const call = <A, E extends Parameters<ReturnType<typeof failure>>[0]>(
  r: Remote,
  use: (client: Client) => Effect.Effect<A, E, HttpClient.HttpClient>
): Effect.Effect<A, AdminRemoteError> =>
  Effect.flatMap(makeClient(r), use).pipe(
    Effect.timeoutFail({
      duration: TIMEOUT,
      onTimeout: () =>
        new AdminRemoteError({ reason: "Unreachable", message: `cannot reach the hub at ${r.hubUrl}: no answer in 30 s` })
    }),
    Effect.catchAll((e) => (e instanceof AdminRemoteError ? Effect.fail(e) : failure(r.hubUrl, r.trust)(e))),
    Effect.provide(HubTls.httpClientLayer(r.trust))
  )

/** `POST /v1/workspaces` (an operator key): the workspace and its first API key. */
export const createWorkspace = (r: Remote, name: string) =>
  call(r, (client) => client.admin.createWorkspace({ payload: { name } }))

/** `POST /v1/workspaces/:id/apikeys`. */
export const createApiKey = (r: Remote, workspaceId: string, name: string, scope: "workspace" | "operator") =>
  call(r, (client) => client.admin.createApiKey({ path: { workspaceId }, payload: { name, scope } }))

/** `GET /v1/workspaces/:id/apikeys`. */
export const listApiKeys = (r: Remote, workspaceId: string) =>
  call(r, (client) => Effect.map(client.admin.listApiKeys({ path: { workspaceId } }), (a) => a.apiKeys))

/** `POST /v1/apikeys/:id/revoke`. */
export const revokeApiKey = (r: Remote, apiKeyId: string) =>
  call(r, (client) => client.admin.revokeApiKey({ path: { apiKeyId } }))

/** `GET /v1/workspaces/:id/agents`. */
export const listAgents = (r: Remote, workspaceId: string) =>
  call(r, (client) => Effect.map(client.admin.listAgents({ path: { workspaceId } }), (a) => a.agents))

/** `POST /v1/agents/:id/revoke`. */
export const revokeAgent = (r: Remote, agentId: string, reason: string | undefined) =>
  call(r, (client) => client.admin.revokeAgent({ path: { agentId }, payload: reason === undefined ? {} : { reason } }))
