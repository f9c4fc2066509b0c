/**
 * The hub's one port: the node server (HTTP or HTTPS, guarded by HttpEdge.ts) as the platform's `HttpServer`, with
 * upgrades dispatched by path. A path registered with `HubUpgrades` (the agent gateway's `/v1/agent`) gets its
 * upgrade requests and their sockets; every other request, an upgrade to an unregistered path included, goes to the
 * served app (the HTTP API), so nothing else has to know about the server's listeners.
 */
import * as Http from "node:http"
import * as Https from "node:https"
import type * as Net from "node:net"
import type { Duplex } from "node:stream"
import type * as Etag from "@effect/platform/Etag"
import type * as HttpPlatform from "@effect/platform/HttpPlatform"
import * as HttpServer from "@effect/platform/HttpServer"
import type { ServeError } from "@effect/platform/HttpServerError"
import type * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as ClientAddress from "./ClientAddress.ts"
import * as HttpEdge from "./HttpEdge.ts"
import * as LinkTarget from "./LinkTarget.ts"
import { DEFAULT_LIMITS, type HubConfigShape } from "../HubConfig.ts"

/**
 * The hub's node `http.Server` (an `https.Server` with TLS). Its requests and upgrades are dispatched by this module:
 * serve routes through the platform's `HttpServer` and register upgrade paths with `HubUpgrades`, rather than adding
 * listeners of your own.
 */
export class HubHttpServer extends Context.Tag("connect/hub/HubHttpServer")<HubHttpServer, Http.Server>() {}

/** Takes over an HTTP upgrade request and its socket (e.g. `WebSocket.upgrades(...).handle`). */
export type UpgradeHandler = (request: Http.IncomingMessage, socket: Duplex, head: Buffer) => void

/**
 * WebSocket upgrades by path: an upgrade whose path (without query) equals a registered path goes to its handler; any
 * other upgrade is answered by the served app like a normal request.
 */
export class HubUpgrades extends Context.Tag("connect/hub/HubUpgrades")<HubUpgrades, {
  /** Routes upgrades of `path` to `handler` until the scope closes. */
  readonly register: (path: `/${string}`, handler: UpgradeHandler) => Effect.Effect<void, never, Scope.Scope>
  /** The handler registered for a request URL, if any. */
  readonly match: (url: string | undefined) => UpgradeHandler | undefined
}>() {}

/**
 * Requests the hub answers outside the platform's app, on the node objects themselves (public links: bodies of any
 * size streamed both ways, upgrades passed through): a request or upgrade a registered route `matches` goes to it,
 * before any registered upgrade path and before the app.
 */
export interface RawRoute {
  /** Whether this route takes the request (by its URL or Host). */
  readonly matches: (request: Http.IncomingMessage) => boolean
  /** Answers a plain request. */
  readonly request: (request: Http.IncomingMessage, response: Http.ServerResponse) => void
  /** Takes over an upgrade request and its socket. */
  readonly upgrade: UpgradeHandler
}

/** Routes answered on the node objects (see `RawRoute`). */
export class HubRawRoutes extends Context.Tag("connect/hub/HubRawRoutes")<HubRawRoutes, {
  /** Adds `route` until the scope closes. */
  readonly register: (route: RawRoute) => Effect.Effect<void, never, Scope.Scope>
  /** The route that takes `request`, if any. */
  readonly match: (request: Http.IncomingMessage) => RawRoute | undefined
}>() {}

const makeRawRoutes = () => {
  const routes = new Set<RawRoute>()
  return HubRawRoutes.of({
    register: (route) =>
      Effect.acquireRelease(Effect.sync(() => void routes.add(route)), () => Effect.sync(() => void routes.delete(route))),
    match: (request) => {
      for (const route of routes) if (route.matches(request)) return route
      return undefined
    }
  })
}

const makeUpgrades = () => {
  const handlers = new Map<string, UpgradeHandler>()
  return HubUpgrades.of({
    register: (path, handler) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          if (handlers.has(path)) throw new Error(`upgrade path ${path} registered twice`)
          handlers.set(path, handler)
        }),
        () => Effect.sync(() => handlers.delete(path))
      ),
    match: (url) => handlers.get((url ?? "/").split("?")[0]!)
  })
}

/** The node server for `config`: HTTPS with its certificate when it has one, guarded by the edge's limits. */
const createServer = (config: HubConfigShape): Http.Server => {
  const limits = config.limits ?? DEFAULT_LIMITS
  const options = HttpEdge.serverOptions(limits)
  // An https.Server is an http.Server for everything the hub does with it (requests, upgrades, close).
  const server = config.tls
    ? (Https.createServer({ ...options, ...HttpEdge.tlsOptions(config.tls, limits) }) as unknown as Http.Server)
    : Http.createServer(options)
  HttpEdge.guard(server, limits, ClientAddress.make(config.trustProxy), config.tls !== undefined, (request) =>
    LinkTarget.isLinkRequest(request, config.linkDomain))
  return server
}

/**
 * An upgrade no path is registered for, answered by the app as an ordinary request on the upgrade's socket (the
 * platform's server does the same), which is closed once the answer is written.
 */
const answerAsRequest = (
  handler: (request: Http.IncomingMessage, response: Http.ServerResponse) => void,
  request: Http.IncomingMessage,
  socket: Duplex
) => {
  // Node removed its own error listener before handing the socket over: a reset must not become an uncaught error.
  socket.on("error", () => {})
  const response = new Http.ServerResponse(request)
  response.assignSocket(socket as Net.Socket)
  response.on("finish", () => socket.end())
  handler(request, response)
}

/**
 * The platform's `HttpServer` over `server`: listening, the address and closing are NodeHttpServer's; serving an app
 * answers the server's requests with it and dispatches upgrades through `upgrades`.
 */
const make = (
  server: Http.Server,
  upgrades: HubUpgrades["Type"],
  raw: HubRawRoutes["Type"],
  listen: { readonly port: number; readonly host: string }
): Effect.Effect<HttpServer.HttpServer, ServeError, Scope.Scope> =>
  Effect.map(NodeHttpServer.make(() => server, listen), (node) =>
    HttpServer.make({
      address: node.address,
      serve: (app, middleware) =>
        Effect.gen(function*() {
          const app_ = yield* NodeHttpServer.makeHandler(app, middleware!)
          const handler = (request: Http.IncomingMessage, response: Http.ServerResponse) => {
            const route = raw.match(request)
            if (route) return route.request(request, response)
            app_(request, response)
          }
          const onUpgrade: UpgradeHandler = (request, socket, head) => {
            const route = raw.match(request)
            if (route) return route.upgrade(request, socket, head)
            const registered = upgrades.match(request.url)
            if (registered) return registered(request, socket, head)
            answerAsRequest(app_, request, socket)
          }
          server.on("request", handler)
          server.on("upgrade", onUpgrade)
          yield* Effect.addFinalizer(() =>
            Effect.sync(() => {
              server.off("request", handler)
              server.off("upgrade", onUpgrade)
            })
          )
        })
    }))

/**
 * The hub's server listening on `host:port`, as `HubHttpServer`, `HubUpgrades` and the platform's `HttpServer` with
 * the services its apps use (`HttpPlatform`, `Etag`, file system, path). Closing it waits for the server to close.
 */
export const layer = (
  config: HubConfigShape
): Layer.Layer<
  | HubHttpServer
  | HubUpgrades
  | HubRawRoutes
  | HttpServer.HttpServer
  | HttpPlatform.HttpPlatform
  | Etag.Generator
  | NodeContext.NodeContext,
  ServeError
> =>
  Layer.unwrapEffect(
    Effect.sync(() => {
      const server = createServer(config)
      const upgrades = makeUpgrades()
      const raw = makeRawRoutes()
      return Layer.mergeAll(
        Layer.succeed(HubHttpServer, server),
        Layer.succeed(HubUpgrades, upgrades),
        Layer.succeed(HubRawRoutes, raw),
        Layer.scoped(HttpServer.HttpServer, make(server, upgrades, raw, { port: config.port, host: config.host })),
        NodeHttpServer.layerContext
      )
    })
  )
