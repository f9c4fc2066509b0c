/**
 * The hub's HTTP surface: one composable router (`HubRouter`) that modules add routes to with `HubRouter.use`, the
 * routes the hub itself owns (`GET /health`), and the JSON answers for a path no route has (404) or a method a known
 * path does not take (405).
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerError from "@effect/platform/HttpServerError"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/**
 * The hub's router. A module adds routes with a layer:
 * `HubRouter.use((router) => router.get("/path", handler))`, then lists that layer in `Main.RoutesLive`.
 */
export class HubRouter extends HttpRouter.Tag("connect/hub/HubRouter")<HubRouter>() {}

/**
 * `GET /health`: 200 `{"status":"ok"}` when the hub can query its database within 2 s, else 503
 * `{"status":"unavailable","database":"unreachable"}` (the hub fails closed without its event log).
 */
export const HealthRoutes: Layer.Layer<never, never, SqlClient.SqlClient> = HubRouter.use((router) =>
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
const notFound = (routes: ReadonlyArray<HttpRouter.Route<unknown, unknown>>, request: HttpServerRequest.HttpServerRequest) => {
  const path = request.url.split("?")[0]!
  const allowed = [...new Set(routes.filter((r) => r.method !== "*" && patternOf(r.path).test(path)).map((r) => r.method))]
  return allowed.length === 0
    ? errorResponse(404, "NotFound", "no such endpoint")
    : errorResponse(405, "MethodNotAllowed", `${request.method} is not allowed here; use ${allowed.join(" or ")}`, {
      headers: { allow: allowed.sort().join(", ") }
    })
}

/** Serves `HubRouter` with JSON 404 and 405 answers for what no route takes. */
export const serve: Layer.Layer<never, never, HttpServer.HttpServer> = HubRouter.unwrap((router) =>
  HttpServer.serve(
    router.pipe(
      Effect.catchIf(
        (e): e is HttpServerError.RouteNotFound => e instanceof HttpServerError.RouteNotFound,
        (e) => Effect.succeed(notFound([...router.routes], e.request))
      )
    )
  )
  // The same requirements `HubRouter.serve()` declares: the router's default services come with the node server.
) as Layer.Layer<never, never, HttpServer.HttpServer>
