/**
 * The hub's HTTP surface on HubServer's port: the declared API (core/HubApi.ts; its handlers in AgentApi.ts) and the
 * routes outside the declaration (`GET /health`) on one router, with the hub's JSON error body,
 * `{"error":{"code","message"}}`, for what no handler answers: 404 for a path no route has, 405 (with `Allow`) for a
 * method a known path does not take, 500 for a defect. (A future endpoint that decodes path or query parameters
 * should answer their `HttpApiDecodeError` in that shape too, e.g. with `HttpApiBuilder.middleware`.)
 */
import type { Api } from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
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
import * as AgentApi from "./AgentApi.ts"
import type * as AgentAuth from "../commands/AgentAuth.ts"
import type { HubConfig } from "../HubConfig.ts"

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
 * Everything the hub answers over HTTP: the declared API with its handlers and authentication, and the routes
 * outside it. A new group of the declaration gets its handlers' layer added here.
 */
export const layer: Layer.Layer<
  Api,
  never,
  EventLog | SqlClient.SqlClient | AgentAuth.TokenSettings | HubConfig
> = Layer.mergeAll(
  HttpApiBuilder.api(HubApi.HubApi).pipe(
    Layer.provide([AgentApi.Agents, AgentApi.Services]),
    Layer.provide(AgentApi.Authentication)
  ),
  HealthRoutes
)

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
