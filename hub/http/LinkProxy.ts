/**
 * Public links on the hub's port: a request under `/l/TOKEN/` (or to `TOKEN.<--link-domain>`) is checked — the link
 * exists (404), is neither revoked nor expired (410), its client address is within the link's rate (429 with
 * `Retry-After`, `@effect/experimental`'s RateLimiter), its path normalises cleanly (400) to one under the link's
 * prefixes (403) and its method is allowed (405) — and then forwarded to the exposing agent over a relay stream from
 * the link's keep-alive pool (LinkPool.ts), body and answer streamed both ways unchanged (LinkForward.ts). Every
 * request let through is a `LinkAccessed` once answered, every refusal one coalesced per address (LinkRecorder.ts),
 * a token that matches no link too, and while the log is unavailable (facts waiting in the spool, or the link lookup
 * failing or not answering) the answer is 503. Tokens the cache does not know cost their address a lookup out of a
 * budget per minute; past it the answer is 429 without a lookup.
 */
import type * as Http from "node:http"
import type { Duplex } from "node:stream"
import * as RateLimiter from "@effect/experimental/RateLimiter"
import { SqlClient } from "@effect/sql"
import { Cause, Duration, Effect, Either, Exit, FiberSet } from "effect"
import type { LinkDeniedReason } from "../../core/Events.ts"
import * as LinkRules from "../../core/LinkRules.ts"
import { sha256Hex } from "../../core/Secrets.ts"
import * as AgentAuth from "../commands/AgentAuth.ts"
import type { Spool } from "../eventlog/Spool.ts"
import { DEFAULT_DENIAL_WINDOW_MS, HubConfig } from "../HubConfig.ts"
import type * as Links from "../readmodels/Links.ts"
import type { RelayService } from "../relay/Relay.ts"
import * as ClientAddress from "./ClientAddress.ts"
import * as HttpEdge from "./HttpEdge.ts"
import { HubRawRoutes } from "./HubServer.ts"
import * as LinkCache from "./LinkCache.ts"
import * as LinkNotices from "./LinkNotices.ts"
import * as LinkForward from "./LinkForward.ts"
import * as LinkIdle from "./LinkIdle.ts"
import * as LinkPool from "./LinkPool.ts"
import * as LinkRecorder from "./LinkRecorder.ts"
import * as LinkTarget from "./LinkTarget.ts"
import * as RateLimitStore from "./RateLimitStore.ts"

/** A request's link, checked: where it goes and what is recorded of it. */
export interface Checked {
  readonly link: Links.Row
  readonly ref: LinkRecorder.LinkRef
  readonly ip: string
  readonly path: string
  readonly query: string | undefined
  /** Came on the hub's own host (`/l/TOKEN/`): no cookies either way, a sandboxed answer (LinkTarget.onHubOrigin). */
  readonly hubOrigin: boolean
}

/** A refusal: its status, the reason recorded (none: not recorded), headers, message; `link` when there is one. */
interface Refusal {
  readonly status: number
  readonly code: string
  readonly message: string
  readonly reason?: typeof LinkDeniedReason.Type
  readonly headers?: Record<string, string>
  readonly link?: Links.Row
  readonly path?: string
}

/**
 * Lookups of tokens the cache does not know one client address may cause per minute (a token bucket: 120 at once,
 * then two a second). An honest client costs one per link per few seconds (LinkCache.ts); a stranger trying tokens
 * costs the database no more than this, and past it is answered 429 without a lookup.
 */
const LOOKUPS_PER_MINUTE = 120

/** The limits' window, decoded once: the RateLimiter decodes the string form on every consume (0.9% of the hub's CPU). */
const MINUTE = Duration.minutes(1)

/**
 * A lookup that has not answered in this long is a 503 (a stalled database must not hold requests, and their
 * sockets, for ever).
 */
const LOOKUP_TIMEOUT = "5 seconds"

const unavailable: Refusal = { status: 503, code: "Unavailable", message: "the hub cannot reach its event log; try again" }

const internal: Refusal = { status: 500, code: "Internal", message: "internal error" }

/** What the checks use. */
interface CheckDeps {
  readonly linkDomain: string | undefined
  readonly now: () => Date
  readonly spool: Spool
  readonly limiter: RateLimiter.RateLimiter
  readonly cache: LinkCache.LinkCache
  /** Whether the records of requests let through are not kept up with (LinkRecorder.stalled): fail closed. */
  readonly stalled: () => boolean
  /** Runs a rate limiter's consume (its store is in memory: synchronous) to its exit. */
  readonly consume: (effect: Effect.Effect<unknown, RateLimiter.RateLimiterError>) => Exit.Exit<unknown, RateLimiter.RateLimiterError>
}

/**
 * The checks before a link is known, in order: the log is available and keeping up with the records of requests let
 * through (503), there is a token (404), and a token the cache does not know is within its address's lookup budget
 * (429). Undefined: go on (`decide`, after a lookup if the cache does not know the token). `tokenHash` is undefined
 * for no token at all.
 */
const admit = (ip: string, target: LinkTarget.Target, tokenHash: string | undefined, deps: CheckDeps): Refusal | undefined => {
  if (deps.spool.pending() > 0 || deps.stalled()) return unavailable
  if (tokenHash === undefined) return notFound(target)
  // A token already being looked up costs nothing more: the request waits for that lookup (LinkCache.ts).
  if (deps.cache.known(tokenHash) !== undefined || deps.cache.looking(tokenHash)) return undefined
  const budget = deps.consume(deps.limiter.consume({
    key: `lookup\0${ClientAddress.limitKey(ip)}`,
    limit: LOOKUPS_PER_MINUTE,
    window: MINUTE,
    algorithm: "token-bucket",
    onExceeded: "fail"
  }))
  if (Exit.isSuccess(budget)) return undefined
  return {
    status: 429,
    code: "TooManyRequests",
    message: "too many requests for unknown links from your address; slow down",
    reason: "rate_limited",
    path: target.path,
    headers: { "retry-after": "1" }
  }
}

const notFound = (target: LinkTarget.Target): Refusal => ({
  status: 404,
  code: "NotFound",
  message: "no such link",
  reason: "unknown_token",
  path: target.path
})

/** A refusal of a request to `link`: a function of its own, not one that `decide` makes per request (see `serve`). */
const refusedBy = (
  link: Links.Row,
  target: LinkTarget.Target,
  status: number,
  code: string,
  reason: typeof LinkDeniedReason.Type,
  message: string,
  headers?: Record<string, string>
): Refusal => ({ status, code, reason, message, link, path: target.path, ...(headers ? { headers } : {}) })

/**
 * The checks of a request once its link is known (`undefined`: no such link), in order; the first that fails
 * answers. Synchronous, in plain code: a request whose link the cache holds is checked without a fiber of its own or a
 * timer (the Effect generator and the lookup's timeout run per request were a fifth of the hub's CPU at 32 clients).
 */
const decide = (
  request: Http.IncomingMessage,
  ip: string,
  target: LinkTarget.Target,
  link: Links.Row | undefined,
  deps: CheckDeps
): Checked | Refusal => {
  if (!link) return notFound(target)
  if (link.revoked_at !== null) return refusedBy(link, target, 410, "Gone", "revoked", "this link was revoked")
  if (new Date(link.expires_at).getTime() <= deps.now().getTime()) return refusedBy(link, target, 410, "Gone", "expired", "this link has expired")
  const limited = deps.consume(deps.limiter.consume({
    key: `${link.id}\0${ClientAddress.limitKey(ip)}`,
    limit: link.rate_limit_per_minute,
    window: MINUTE,
    algorithm: "fixed-window",
    onExceeded: "fail"
  }))
  if (Exit.isFailure(limited)) {
    const e = limited.cause._tag === "Fail" ? limited.cause.error : undefined
    const seconds = e?.reason === "Exceeded" ? Math.max(1, Math.ceil(Duration.toSeconds(e.retryAfter))) : 60
    return refusedBy(link, target, 429, "TooManyRequests", "rate_limited", "too many requests from your address; slow down", {
      "retry-after": String(seconds)
    })
  }
  const normal = normalised(target.path)
  if (Either.isLeft(normal)) return refusedBy(link, target, 400, "BadRequest", "bad_path", normal.left.message)
  if (!LinkRules.allowedPath(normal.right, link.path_prefixes)) {
    return {
      status: 403,
      code: "Forbidden",
      reason: "path_not_allowed",
      message: "this path is not shared by the link",
      link,
      path: normal.right
    }
  }
  // Only a WebSocket upgrade passes: after a 101 the hub relays bytes it no longer parses, so an upgrade to another
  // protocol (`h2c`) would carry requests no path, method or rate check and no record ever sees.
  const upgrade = request.headers.upgrade
  if (upgrade !== undefined && upgrade.trim().toLowerCase() !== "websocket") {
    return refusedBy(link, target, 400, "BadRequest", "bad_path", "only WebSocket upgrades pass through a link")
  }
  if (!link.methods.includes(request.method ?? "")) {
    return {
      status: 405,
      code: "MethodNotAllowed",
      reason: "method_not_allowed",
      message: `${(request.method ?? "").slice(0, 16)} is not allowed by this link`,
      link,
      path: normal.right,
      headers: { allow: link.methods.join(", ") }
    }
  }
  const ref = { linkId: link.id, workspaceId: link.workspace_id, serviceId: link.service_id }
  const hubOrigin = LinkTarget.onHubOrigin(request, deps.linkDomain)
  return { link, ref, ip, path: normal.right, query: target.query, hubOrigin } satisfies Checked
}

/** Paths normalised lately (at most `NORMALISED_MAX`, each at most 512 characters): a client repeats its paths. */
const NORMALISED_MAX = 1024
const normalisedPaths = new Map<string, ReturnType<typeof LinkRules.normalisePath>>()

/** `LinkRules.normalisePath` of `path`, from the recent ones when it is there (it is pure). */
const normalised = (path: string): ReturnType<typeof LinkRules.normalisePath> => {
  const hit = normalisedPaths.get(path)
  if (hit !== undefined) return hit
  const normal = LinkRules.normalisePath(path)
  if (path.length <= 512) {
    if (normalisedPaths.size >= NORMALISED_MAX) normalisedPaths.clear()
    normalisedPaths.set(path, normal)
  }
  return normal
}

/** How long a stop waits for the exchanges it cut to record themselves (each does within a tick or two). */
const STOP_RECORD_WAIT = Duration.seconds(5)

const isChecked = (decision: Checked | Refusal): decision is Checked => "ref" in decision

/**
 * Serves public links on the hub's port through `relay` until the scope closes; `revoked` drops a link revoked
 * elsewhere (another hub on the same database: the gateway reads revocations from the log, PgRevocations.ts).
 */
export const serve = (relay: RelayService, spool: Spool) =>
  Effect.gen(function*() {
    const config = yield* HubConfig
    const settings = yield* AgentAuth.TokenSettings
    const routes = yield* HubRawRoutes
    const context = yield* Effect.context<SqlClient.SqlClient>()
    const limiter = yield* RateLimiter.make.pipe(Effect.provide(RateLimitStore.layerMemory))
    const recorder = yield* LinkRecorder.make(spool, { window: config.denialWindowMs ?? DEFAULT_DENIAL_WINDOW_MS })
    const pools = LinkPool.make(relay)
    // Exchanges forwarded and not yet recorded. At a stop their connections are closed (closeAll), and each records
    // itself on a later tick, when its sockets report the close; the recorder (made before this finalizer, so closed
    // after it) must still take those records: the stop waits for them, at most STOP_RECORD_WAIT. Without the wait a
    // request in flight at a graceful stop (SIGTERM, a restart) was neither appended nor spooled.
    let unrecorded = 0
    const counted: LinkRecorder.LinkRecorder = {
      ...recorder,
      allowed: (access) => {
        unrecorded--
        recorder.allowed(access)
      },
      denied: (access, reason) => {
        unrecorded--
        recorder.denied(access, reason)
      }
    }
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        pools.closeAll()
        const deadline = Date.now() + Duration.toMillis(STOP_RECORD_WAIT)
        while (unrecorded > 0 && Date.now() < deadline) yield* Effect.sleep("10 millis")
      })
    )
    const cache = LinkCache.make()
    const revoked = (linkId: string) => {
      cache.forget(linkId)
      pools.drop(linkId)
    }
    const notices = yield* Effect.serviceOption(LinkNotices.LinkNotices)
    if (notices._tag === "Some") yield* notices.value.listen(revoked)
    const fibers = yield* FiberSet.make()
    const runFork = yield* FiberSet.runtime(fibers)<SqlClient.SqlClient>()
    const trusted = ClientAddress.make(config.trustProxy)
    const deps: CheckDeps = {
      linkDomain: config.linkDomain,
      now: settings.now,
      spool,
      limiter,
      cache,
      stalled: recorder.stalled,
      // The store answers synchronously (on Effect's default clock, as before); anything but its own refusal (a defect)
      // is thrown, and the request is a 500. Run on the default runtime: a fiber there costs about half what one on the
      // hub's does (3.6 against 6.2 µs per consume, measured apart), the store needing nothing from the hub's context.
      consume: (effect) => {
        const exit = Effect.runSyncExit(effect)
        if (Exit.isFailure(exit) && exit.cause._tag !== "Fail") throw Cause.squash(exit.cause)
        return exit
      }
    }
    const proto = config.tls || config.publicUrl?.startsWith("https:") ? "https" as const : "http" as const

    // Per request, no function is made but the lookup's observer: the hub's bundle keeps function names (bin/Bundle.js,
    // esbuild keepNames), so each named function made per request is also an Object.defineProperty; the two this path
    // made (`done`, `decideOrFail`) were ~0.8% of the hub's CPU at 32 clients.
    const conclude = (
      request: Http.IncomingMessage,
      ip: string,
      started: number,
      decision: Checked | Refusal,
      answer: (refusal: Refusal) => void,
      forward: (checked: Checked, started: number) => void
    ) => {
      if (isChecked(decision)) return forward(decision, started)
      const refusal = decision
      if (refusal.reason) {
        recorder.denied({
          link: refusal.link && { linkId: refusal.link.id, workspaceId: refusal.link.workspace_id, serviceId: refusal.link.service_id },
          ip,
          userAgent: request.headers["user-agent"],
          method: request.method ?? "",
          path: refusal.path ?? "",
          status: refusal.status,
          bytesUp: 0,
          bytesDown: 0,
          durationMs: Date.now() - started
        }, refusal.reason)
      }
      answer(refusal)
    }
    const decideOrFail = (request: Http.IncomingMessage, ip: string, target: LinkTarget.Target, link: Links.Row | undefined): Checked | Refusal => {
      try {
        return decide(request, ip, target, link, deps)
      } catch {
        return internal
      }
    }

    const run = (
      request: Http.IncomingMessage,
      answer: (refusal: Refusal) => void,
      forward: (checked: Checked, started: number) => void
    ) => {
      const started = Date.now()
      const ip = ClientAddress.resolve(trusted, request.socket.remoteAddress, request.headers["x-forwarded-for"])
      const target = LinkTarget.parse(request, config.linkDomain)
      const tokenHash = LinkRules.looksLikeLinkToken(target.token) ? sha256Hex(target.token) : undefined
      let refused: Refusal | undefined
      try {
        refused = admit(ip, target, tokenHash, deps)
      } catch {
        refused = internal
      }
      if (refused) return conclude(request, ip, started, refused, answer, forward)
      // A link the cache holds is checked at once, synchronously. A lookup (a token the cache does not know) runs in
      // the set, interrupted when the proxy stops, and is a 503 when the database does not answer in time.
      const known = deps.cache.known(tokenHash!)
      if (known !== undefined) {
        // A live link's copy is read again in the background before it expires, so that no request waits for it.
        if (deps.cache.refreshDue(tokenHash!)) {
          runFork(Effect.provide(Effect.ignore(Effect.timeout(deps.cache.refresh(tokenHash!), LOOKUP_TIMEOUT)), context))
        }
        return conclude(request, ip, started, decideOrFail(request, ip, target, known.row), answer, forward)
      }
      const lookup = deps.cache.get(tokenHash!).pipe(
        Effect.timeoutFail({ duration: LOOKUP_TIMEOUT, onTimeout: () => "timeout" as const }),
        Effect.match({
          onFailure: (): Checked | Refusal => unavailable,
          onSuccess: (link) => decideOrFail(request, ip, target, link)
        })
      )
      runFork(Effect.provide(lookup, context)).addObserver((exit) =>
        conclude(request, ip, started, Exit.isSuccess(exit) ? exit.value : internal, answer, forward)
      )
    }

    const idleMs = Duration.toMillis(config.limits?.linkIdleTimeout ?? LinkForward.IDLE_TIMEOUT_MS)
    const forwardDeps = { pools, recorder: counted, proto, idleMs, idle: LinkIdle.make(idleMs) }
    yield* routes.register({
      matches: (request) => LinkTarget.isLinkRequest(request, config.linkDomain),
      request: (request, response) =>
        run(request, (refusal) => {
          // A refused request's body is nobody's: the connection closes with the answer instead of reading (dumping)
          // what a stranger may dribble for ever (link paths have no request deadline; only forwarded bodies are timed).
          response.writeHead(refusal.status, { "content-type": "application/json", connection: "close", ...refusal.headers })
          response.end(JSON.stringify({ error: { code: refusal.code, message: refusal.message } }), () => {
            if (!request.complete) request.socket.destroy()
          })
        }, (checked, started) => {
          unrecorded++
          LinkForward.request(forwardDeps, checked, request, response, started)
        }),
      upgrade: (request, socket: Duplex, head: Buffer) => {
        socket.on("error", () => {})
        run(request, (refusal) => {
          socket.end(HttpEdge.rawErrorResponse(refusal.status, refusal.code, refusal.message))
        }, (checked, started) => {
          unrecorded++
          LinkForward.upgrade(forwardDeps, checked, request, socket, head, started)
        })
      }
    })
    return { revoked }
  })
