/**
 * The hub's HTTP surface on HubServer's port: the declared API (core/HubApi.ts; its handlers in AgentApi.ts) and the
 * routes outside the declaration (`GET /health`) on one router, with the hub's JSON error body,
 * `{"error":{"code","message"}}`, for what no handler answers: 404 for a path no route has, 405 (with `Allow`) for a
 * method a known path does not take, 400 for a path or query parameter the declaration refuses, 500 for a defect.
 */
import type { Api } from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiError from "@effect/platform/HttpApiError"
import type * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import type * as HttpApp from "@effect/platform/HttpApp"
import type * as HttpRouter from "@effect/platform/HttpRouter"
import type * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerError from "@effect/platform/HttpServerError"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type { EventLog } from "../../core/EventLog.ts"
import * as HubApi from "../../core/HubApi.ts"
import * as AdminApi from "./AdminApi.ts"
import * as AgentApi from "./AgentApi.ts"
import * as LinkApi from "./LinkApi.ts"
import * as ShareApi from "./ShareApi.ts"
import type * as AgentAuth from "../commands/AgentAuth.ts"
import * as ConsoleRoutes from "../console/ConsoleRoutes.ts"
import * as ConsoleSessions from "../console/Sessions.ts"
import type { HubConfig } from "../HubConfig.ts"
import type { HubSpool } from "../relay/HubSpool.ts"

/**
 * `GET /health`: 200 `{"status":"ok"}` when the hub can query its database within 2 s, else 503
 * `{"status":"unavailable","database":"unreachable"}` (the hub fails closed without its event log).
 */
export const HealthRoutes: Layer.Layer<never, never, SqlClient.SqlClient> = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* router.get(
      "/health",
      sql`select 1`.pipe(
        Effect.timeout("2 seconds"),
        Effect.matchEffect({
          onSuccess: () => HttpServerResponse.json({ status: "ok" }),
          onFailure: () => HttpServerResponse.json({ status: "unavailable", database: "unreachable" }, { status: 503 })
        })
      )
    )
  })
)

/**
 * The handlers of the declared `audit` group. They are audit's (audit/AuditApi.ts), handed to the hub by
 * bin/connect.ts: hub/ never imports audit/. They run on the hub's database and log, behind its API key check.
 */
export type AuditRoutes = Layer.Layer<
  HttpApiGroup.ApiGroup<"connect-hub", "audit">,
  never,
  EventLog | SqlClient.SqlClient | HubApi.ApiKeyAuth
>

/** The `audit` group of a hub started without audit's routes: every endpoint answers 404. */
export const AuditNotServed: AuditRoutes = HttpApiBuilder.group(HubApi.HubApi, "audit", (handlers) => {
  const notServed = () => new HubApi.NotFound({ message: "this hub does not serve the audit API" })
  return Effect.succeed(
    handlers.handle("events", notServed).handle("tail", notServed).handle("integrity", notServed).handle("stats", notServed)
      .handle("access", notServed)
  )
})

/**
 * Everything the hub answers over HTTP: the declared API with its handlers (`audit`'s passed in) and authentication,
 * and the routes outside it. A new group of the declaration gets its handlers' layer added here.
 */
export const layerWith = (audit: AuditRoutes): Layer.Layer<
  Api,
  never,
  EventLog | SqlClient.SqlClient | AgentAuth.TokenSettings | HubConfig | HubSpool
> =>
  Layer.mergeAll(
    HttpApiBuilder.api(HubApi.HubApi).pipe(
      Layer.provide([AgentApi.Agents, AgentApi.Services, LinkApi.Handlers, ShareApi.Handlers, AdminApi.AdminRoutes, audit]),
      Layer.provide(AgentApi.Authentication)
    ),
    HealthRoutes,
    // The web console at /ui; its session cookie is also a credential of the API (AgentApi.Authentication).
    ConsoleRoutes.layer
  ).pipe(Layer.provide(ConsoleSessions.layerConfig))

/** Everything the hub answers over HTTP, without audit's routes. */
export const layer = layerWith(AuditNotServed)

/** A JSON error answer, `{"error":{"code","message"}}`, the shape of every 4xx and 5xx the hub sends. */
export const errorResponse = (
  status: number,
  code: string,
  message: string,
  options: { readonly headers?: Record<string, string> } = {}
): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.unsafeJson({ error: { code, message } }, { status, ...options })

const patternOf = (path: string): RegExp =>
  new RegExp(`^${path.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/:[^/]+/g, "[^/]+").replace(/\*/g, ".*")}$`)

/** A refused request parameter in one short line: each issue's path and message, at most 500 characters. */
const describeDecodeError = (error: HttpApiError.HttpApiDecodeError): string => {
  // The first issue of each parameter: an optional one also fails its "undefined" member, which says nothing.
  const first = new Map<string, string>()
  for (const issue of error.issues) {
    const path = issue.path.join(".") || "request"
    if (!first.has(path)) first.set(path, issue.message)
  }
  const text = [...first].map(([path, message]) => `${path}: ${message}`).join("; ")
  return `bad request parameter: ${text.length > 500 ? `${text.slice(0, 500)}…` : text}`
}

/** 405 with `Allow` when another method of `request`'s path has a route, else 404. */
const notFound = (
  routes: Iterable<HttpRouter.Route<unknown, unknown>>,
  request: HttpServerRequest.HttpServerRequest
) => {
  const path = request.url.split("?")[0]!
  const allowed = [...new Set([...routes].filter((r) => r.method !== "*" && patternOf(r.path).test(path)).map((r) => r.method))]
  return allowed.length === 0
    ? errorResponse(404, "NotFound", "no such endpoint")
    : errorResponse(405, "MethodNotAllowed", `${request.method} is not allowed here; use ${allowed.join(" or ")}`, {
      headers: { allow: allowed.sort().join(", ") }
    })
}

/**
 * What the handlers leave unanswered: a request no route takes (404, or 405 with `Allow`) and a defect (500, logged).
 * Their declared errors go on to be encoded by the API; an interruption (the client went away) stays one.
 */
const answerTheRest = HttpApiBuilder.middleware(
  Effect.map(HttpApiBuilder.Router, (router) => (app: HttpApp.Default) =>
    Effect.catchAllCause(app, (cause: Cause.Cause<unknown>) => {
      const failure = Cause.failureOption(cause)
      if (Option.isSome(failure) && failure.value instanceof HttpServerError.RouteNotFound) {
        const request = failure.value.request
        return Effect.map(router.router, (current) => notFound(current.routes, request))
      }
      // A query parameter the declaration refuses (a repeated one, a limit that is not a number): 400 in our shape.
      if (Option.isSome(failure) && failure.value instanceof HttpApiError.HttpApiDecodeError) {
        return Effect.succeed(errorResponse(400, "BadRequest", describeDecodeError(failure.value)))
      }
      if (Cause.isDie(cause)) {
        return Effect.as(Effect.logError("HTTP API: defect", cause), errorResponse(500, "Internal", "internal error"))
      }
      // A declared error (encoded by the API next) or an interruption.
      return Effect.failCause(cause as Cause.Cause<never>)
    }))
)

/** Serves the API `layer` provides, and the routes outside it, on the hub's `HttpServer`. */
export const serve: Layer.Layer<never, never, HttpServer.HttpServer | HttpRouter.HttpRouter.DefaultServices | Api> =
  HttpApiBuilder.serve().pipe(
    Layer.provide(answerTheRest),
    // The router the handlers are on (the same instance: a layer is built once per hub), for the 405's `Allow`.
    Layer.provide(HttpApiBuilder.Router.Live)
  )
