/**
 * The agent's HTTP client for the hub's API (JSON, `Authorization: Bearer`): provisioning with an API key, token
 * rotation and the service list; plus the hub URL rules (TLS unless loopback, the gateway address).
 */
import * as Dns from "node:dns"
import * as Net from "node:net"
import { Effect, Schema } from "effect"

/** Why a hub API call failed. */
export class HubApiError extends Schema.TaggedError<HubApiError>()("HubApiError", {
  /** "Unreachable": no HTTP answer; "Refused": an error answer (see `code`); "BadResponse": not the expected JSON. */
  reason: Schema.Literal("Unreachable", "Refused", "BadResponse"),
  message: Schema.String,
  status: Schema.optional(Schema.Number),
  /** The hub's error code (`Unauthorized`, `Revoked`, ...). */
  code: Schema.optional(Schema.String)
}) {}

/** The hub URL is unusable (bad syntax, or plain HTTP to a non-loopback host without `CONNECT_ALLOW_INSECURE`). */
export class HubUrlError extends Schema.TaggedError<HubUrlError>()("HubUrlError", {
  message: Schema.String
}) {}

/** A provisioned agent (`POST /v1/agents`). */
export const Provisioned = Schema.Struct({
  agentId: Schema.String,
  workspaceId: Schema.String,
  token: Schema.String,
  expiresAt: Schema.optional(Schema.String)
})

/** A rotated token (`POST /v1/agents/rotate`). */
export const Rotated = Schema.Struct({
  token: Schema.String,
  expiresAt: Schema.optional(Schema.String),
  oldValidUntil: Schema.optional(Schema.String)
})

/** One service of the workspace (`GET /v1/services`). */
export const ServiceInfo = Schema.Struct({
  name: Schema.String,
  agentId: Schema.String,
  agentLabel: Schema.optional(Schema.NullOr(Schema.String)),
  online: Schema.Boolean
})

/** One service of the workspace. */
export type ServiceInfo = typeof ServiceInfo.Type

const Services = Schema.Struct({ services: Schema.Array(ServiceInfo) })

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

const call = <A, I>(
  hubUrl: string,
  method: "GET" | "POST",
  path: string,
  secret: string,
  schema: Schema.Schema<A, I>,
  body?: unknown
): Effect.Effect<A, HubApiError> =>
  Effect.gen(function*() {
    const target = `${hubUrl}${path}`
    const response = yield* Effect.tryPromise({
      try: (signal) =>
        fetch(target, {
          method,
          signal: AbortSignal.any([signal, AbortSignal.timeout(15_000)]),
          headers: {
            authorization: `Bearer ${secret}`,
            accept: "application/json",
            ...(body === undefined ? {} : { "content-type": "application/json" })
          },
          ...(body === undefined ? {} : { body: JSON.stringify(body) })
        }),
      catch: (error) => {
        const cause = (error as { cause?: { code?: string; message?: string } }).cause
        return new HubApiError({
          reason: "Unreachable",
          message: `cannot reach the hub at ${hubUrl}: ${cause?.code ?? cause?.message ?? (error as Error).message}`
        })
      }
    })
    const text = yield* Effect.tryPromise({
      try: () => response.text(),
      catch: () => new HubApiError({ reason: "Unreachable", message: `the hub at ${hubUrl} closed the response early` })
    })
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      json = undefined
    }
    if (!response.ok) {
      const error = (json as { error?: { code?: unknown; message?: unknown } } | undefined)?.error
      const code = typeof error?.code === "string" ? error.code : undefined
      const message = typeof error?.message === "string" ? error.message : `HTTP ${response.status}`
      return yield* new HubApiError({
        reason: "Refused",
        status: response.status,
        message: `${method} ${path}: ${message}`,
        ...(code === undefined ? {} : { code })
      })
    }
    return yield* Schema.decodeUnknown(schema)(json).pipe(
      Effect.mapError(() =>
        new HubApiError({ reason: "BadResponse", status: response.status, message: `${method} ${path}: unexpected answer from the hub` })
      )
    )
  })

/** `POST /v1/agents` with an API key: a new agent and its token (returned once). */
export const provision = (hubUrl: string, apiKey: string, label?: string) =>
  call(hubUrl, "POST", "/v1/agents", apiKey, Provisioned, label === undefined ? {} : { label })

/** `POST /v1/agents/rotate` with the agent token: a new token; the old one stays valid until `oldValidUntil`. */
export const rotate = (hubUrl: string, token: string) => call(hubUrl, "POST", "/v1/agents/rotate", token, Rotated, {})

/** `GET /v1/services` with the agent token: the services of the agent's workspace. */
export const services = (hubUrl: string, token: string) =>
  Effect.map(call(hubUrl, "GET", "/v1/services", token, Services), (r) => r.services)
