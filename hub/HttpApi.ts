/**
 * The hub's HTTP surface: one composable router (`HubRouter`) that modules add routes to with `HubRouter.use`, and
 * the routes the hub itself owns (`GET /health`).
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
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
