/**
 * The web console's routes on the hub's port, under `/ui`: the page, its script and style (the views are Preact + htm
 * from the installed `htm` package, served as they are: no build step, nothing from a CDN), and the session — `POST
 * /ui/session` exchanges an API key for the cookie, `GET` says who is signed in, `DELETE` signs out. The console reads
 * the log only through the declared API (`/v1/…`), which takes the cookie as it takes the key. Every answer here has a
 * strict Content-Security-Policy: scripts, styles and connections from the hub itself only; no inline script or style.
 */
import * as Fs from "node:fs"
import { createRequire } from "node:module"
import * as Path from "node:path"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type * as SqlClient from "@effect/sql/SqlClient"
import { Effect, Layer, Option, Schema } from "effect"
import { CAPS, sanitize } from "../../core/Text.ts"
import * as AgentAuth from "../commands/AgentAuth.ts"
import * as ClientAddress from "../http/ClientAddress.ts"
import * as HttpEdge from "../http/HttpEdge.ts"
import { HubConfig } from "../HubConfig.ts"
import { COOKIE, ConsoleSessions, type Presenter } from "./Sessions.ts"

/** The policy of every console answer: nothing inline, nothing from elsewhere, no framing. */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'"
].join("; ")

const SECURITY_HEADERS = {
  "content-security-policy": CONTENT_SECURITY_POLICY,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cache-control": "no-store"
}

const require = createRequire(import.meta.url)

/** The installed `htm` package's directory (its exports map hides the browser build's file name). */
const htmRoot = () => Path.resolve(Path.dirname(require.resolve("htm")), "..")

/** The console's static files: path under /ui → file and content type. */
const assets = (): Map<string, { readonly body: Uint8Array; readonly type: string }> => {
  const ui = Path.join(import.meta.dirname, "ui")
  const files: Array<[string, string, string]> = [
    ["/ui", Path.join(ui, "index.html"), "text/html; charset=utf-8"],
    ["/ui/app.js", Path.join(ui, "app.js"), "text/javascript; charset=utf-8"],
    ["/ui/views.js", Path.join(ui, "views.js"), "text/javascript; charset=utf-8"],
    ["/ui/parts.js", Path.join(ui, "parts.js"), "text/javascript; charset=utf-8"],
    ["/ui/api.js", Path.join(ui, "api.js"), "text/javascript; charset=utf-8"],
    ["/ui/console.css", Path.join(ui, "console.css"), "text/css; charset=utf-8"],
    ["/ui/favicon.svg", Path.join(ui, "favicon.svg"), "image/svg+xml"],
    // Preact, its hooks and htm in one ES module, as the htm package ships it.
    ["/ui/vendor/preact-htm.js", Path.join(htmRoot(), "preact", "standalone.module.js"), "text/javascript; charset=utf-8"]
  ]
  return new Map(files.map(([path, file, type]) => [path, { body: Fs.readFileSync(file), type }]))
}

/** A JSON answer with the console's headers. */
const json = (body: unknown, status = 200, headers: Record<string, string> = {}) =>
  HttpServerResponse.unsafeJson(body, { status, headers: { ...SECURITY_HEADERS, ...headers } })

const error = (status: number, code: string, message: string) => json({ error: { code, message } }, status)

const SignIn = Schema.Struct({ apiKey: Schema.String.pipe(Schema.maxLength(200)) })

/** The session cookie: HttpOnly, SameSite=Strict, Secure when the hub serves TLS, for the session's life. */
const cookie = (value: string, maxAgeSeconds: number, secure: boolean) =>
  `${COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}${secure ? "; Secure" : ""}`

/** The console's routes; they need the sessions, the hub's configuration and its database. */
export const layer: Layer.Layer<never, never, ConsoleSessions | HubConfig | SqlClient.SqlClient> = HttpApiBuilder.Router
  .use((router) =>
    Effect.gen(function*() {
      const sessions = yield* ConsoleSessions
      const config = yield* HubConfig
      const secure = config.tls !== undefined
      const trusted = ClientAddress.make(config.trustProxy)
      const files = assets()
      const presenter = Effect.map(HttpServerRequest.HttpServerRequest, (request): Presenter => {
        const userAgent = request.headers["user-agent"]
        const peer = Option.getOrElse(request.remoteAddress, () => "unknown")
        return {
          ip: AgentAuth.ipOf(ClientAddress.resolve(trusted, peer, request.headers["x-forwarded-for"])),
          userAgent: userAgent === undefined ? undefined : sanitize(userAgent, CAPS.label)
        }
      })
      const cookieOf = Effect.map(HttpServerRequest.HttpServerRequest, (r) => r.cookies[COOKIE] ?? "")
      const unavailable = (e: unknown) =>
        Effect.as(Effect.logError("console: request failed", e), error(503, "Unavailable", "the hub cannot reach its event log; try again"))

      for (const [path, file] of files) {
        yield* router.get(
          path as `/${string}`,
          Effect.succeed(HttpServerResponse.uint8Array(file.body, { contentType: file.type, headers: SECURITY_HEADERS }))
        )
      }

      yield* router.post(
        "/ui/session",
        Effect.gen(function*() {
          const body = yield* HttpEdge.jsonBody(SignIn, 4096)
          const from = yield* presenter
          const { id } = yield* sessions.signIn(body.apiKey.trim(), from)
          return json({ signedIn: true }, 200, { "set-cookie": cookie(id, Math.floor(sessions.ttlMs / 1000), secure) })
        }).pipe(
          Effect.catchTags({
            SignInRefused: (e) =>
              Effect.succeed(error(e.reason === "rate_limited" ? 429 : e.reason === "full" ? 503 : 401, "Unauthorized", e.message)),
            BadRequest: () => Effect.succeed(error(400, "BadRequest", "expected a JSON body {\"apiKey\":\"pc_…\"}")),
            BodyTooLarge: (e) => Effect.succeed(error(413, "BodyTooLarge", e.message)),
            SqlError: unavailable,
            EventLogError: unavailable,
            VersionConflict: unavailable
          })
        )
      )

      yield* router.get(
        "/ui/session",
        Effect.gen(function*() {
          const live = yield* sessions.current(yield* cookieOf, yield* presenter)
          if (Option.isNone(live)) return error(401, "Unauthorized", "not signed in")
          const s = live.value
          return json({
            apiKeyId: s.apiKeyId,
            workspaceId: s.workspaceId,
            scope: s.scope,
            expiresAt: new Date(s.expiresAt).toISOString()
          })
        }).pipe(Effect.catchTags({ SqlError: unavailable, EventLogError: unavailable, VersionConflict: unavailable }))
      )

      yield* router.del(
        "/ui/session",
        Effect.gen(function*() {
          yield* sessions.signOut(yield* cookieOf, yield* presenter)
          return json({ signedIn: false }, 200, { "set-cookie": cookie("", 0, secure) })
        }).pipe(Effect.catchTags({ EventLogError: unavailable, VersionConflict: unavailable }))
      )
    })
  )
