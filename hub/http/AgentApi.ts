/**
 * The hub's side of the agent API declared in core/HubApi.ts: the bearer authentication its endpoints take (every
 * refused credential recorded, failures limited per address: AuthFailures.ts), and the handlers of the `agents` and
 * `services` groups. Malformed input (a label with U+0000 or a lone surrogate) is refused with 400, while text
 * recorded only for the audit (the user agent) is sanitised, never refused.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import type { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Context, Effect, Either, Layer, Option, Redacted } from "effect"
import * as AgentDecider from "../../core/AgentDecider.ts"
import type { DomainError } from "../../core/DomainError.ts"
import type { EventLog, EventLogError, VersionConflict } from "../../core/EventLog.ts"
import { EventMeta, Sha256Hex } from "../../core/Events.ts"
import * as HubApi from "../../core/HubApi.ts"
import { AgentId, Streams, uuidv7 } from "../../core/Ids.ts"
import { generateAgentToken, sha256Hex } from "../../core/Secrets.ts"
import { CAPS, sanitize } from "../../core/Text.ts"
import * as AgentAuth from "../commands/AgentAuth.ts"
import * as ConsoleSessions from "../console/Sessions.ts"
import { answerWithin } from "./AnswerWithin.ts"
import * as AuthFailures from "./AuthFailures.ts"
import * as ClientAddress from "./ClientAddress.ts"
import * as Command from "../commands/Command.ts"
import * as FactRecorder from "../eventlog/FactRecorder.ts"
import { HubSpool } from "../relay/HubSpool.ts"
import * as HttpEdge from "./HttpEdge.ts"
import { DEFAULT_DENIAL_WINDOW_MS, DEFAULT_LIMITS, HubConfig } from "../HubConfig.ts"
import * as AgentsTable from "../readmodels/Agents.ts"
import * as ServicesTable from "../readmodels/Services.ts"
import * as SharesTable from "../readmodels/Shares.ts"
import { showIp } from "../../core/Mask.ts"

/** The caller's address (through trusted proxies) and its user agent, sanitised for the record. */
const presenter = (trusted: ClientAddress.TrustedProxies) =>
  Effect.map(HttpServerRequest.HttpServerRequest, (request): AgentAuth.Presenter => {
    const userAgent = request.headers["user-agent"]
    const peer = Option.getOrElse(request.remoteAddress, () => "unknown")
    return {
      ip: AgentAuth.ipOf(ClientAddress.resolve(trusted, peer, request.headers["x-forwarded-for"])),
      userAgent: userAgent === undefined ? undefined : sanitize(userAgent, CAPS.label)
    }
  })

/** The meta of an event a request causes: who, from which address, with which user agent. */
const metaOf = (actor: { readonly kind: "apikey" | "agent"; readonly id: string }, from: AgentAuth.Presenter) =>
  new EventMeta({ actor, sourceIp: from.ip, ...(from.userAgent ? { userAgent: from.userAgent } : {}) })

/**
 * The presented secret. `HttpApiSecurity.bearer` passes on whatever follows the header's first seven characters, so
 * the scheme and the shape (one token) are checked here.
 */
const bearerSecret = Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(request.headers["authorization"] ?? "")
  return match
    ? Effect.succeed(match[1]!)
    : new HubApi.Unauthorized({ message: "missing Authorization: Bearer <API key or agent token>" })
})

/** A failure of the database or the log: logged and answered 503 (the hub fails closed without its event log). */
const unavailable = (error: unknown) =>
  Effect.zipRight(
    Effect.logError("agent API: request failed", error),
    new HubApi.Unavailable({ message: "the hub cannot reach its event log; try again" })
  )

/** A refused credential as its answer: 429 once its address is over the limit, else 401. */
const refused = (error: AgentAuth.AuthFailed) =>
  error.reason === "rate_limited"
    ? new HubApi.TooManyRequests({ message: error.message })
    : new HubApi.Unauthorized({ message: error.message })

/** A command the business rules refused, as the answer of its reason. */
const refusal = (error: DomainError) => {
  const message = error.message
  switch (error.reason) {
    case "NotFound":
      return new HubApi.NotFound({ message })
    case "Invalid":
      return new HubApi.Invalid({ message })
    case "Revoked":
      return new HubApi.Revoked({ message })
    case "AlreadyExists":
      return new HubApi.AlreadyExists({ message })
    case "Conflict":
      return new HubApi.Conflict({ message })
  }
}

/**
 * The three bearer schemes of the API over one failure limiter: an API key, an agent token, or either (told apart by
 * the `pc_` prefix). A credential of the wrong kind is refused before any look-up, and is not recorded.
 */
export const Authentication: Layer.Layer<
  HubApi.ApiKeyAuth | HubApi.AgentTokenAuth | HubApi.WorkspaceAuth,
  never,
  EventLog | SqlClient.SqlClient | AgentAuth.TokenSettings | HubConfig | ConsoleSessions.ConsoleSessions | HubSpool
> = Layer.scopedContext(
  Effect.gen(function*() {
    const context = yield* Effect.context<SqlClient.SqlClient | AgentAuth.TokenSettings>()
    const config = yield* HubConfig
    const sessions = yield* ConsoleSessions.ConsoleSessions
    // A window's aggregated refusals are facts: appended, or spooled while the log is unavailable (as the relay's are),
    // never only logged.
    const facts = yield* FactRecorder.make(yield* HubSpool)
    const failures = yield* AuthFailures.make({ window: config.denialWindowMs ?? DEFAULT_DENIAL_WINDOW_MS, record: facts.record })
    const from = presenter(ClientAddress.make(config.trustProxy))
    /** The presented secret and who presented it. */
    const presented = Effect.all({ secret: bearerSecret, from })
    /** A check's refusals and failures as the scheme's answers. */
    const answered = <A>(
      check: Effect.Effect<
        A,
        HubApi.Unauthorized | HubApi.Forbidden | AgentAuth.AuthFailed | EventLogError | VersionConflict | SqlError,
        SqlClient.SqlClient | AgentAuth.TokenSettings | HttpServerRequest.HttpServerRequest
      >
    ) =>
      check.pipe(
        Effect.catchTags({
          AuthFailed: refused,
          EventLogError: unavailable,
          VersionConflict: unavailable,
          SqlError: unavailable
        }),
        Effect.provide(context)
      )
    const callerOf = (k: AgentAuth.ApiKeyPrincipal, presenter: AgentAuth.Presenter, keyPrefix: string | undefined) => {
      /** Records a refusal of this key (coalesced per address and window by `failures`). */
      const refusal = (reason: "wrong_scope" | "rate_limited") =>
        failures.record({
          kind: "apikey",
          reason,
          ip: presenter.ip,
          userAgent: presenter.userAgent,
          apiKeyId: k.apiKeyId,
          workspaceId: k.workspaceId,
          keyPrefix
        }).pipe(Effect.catchTags({ EventLogError: unavailable, VersionConflict: unavailable }))
      return {
        apiKeyId: k.apiKeyId,
        workspaceId: k.workspaceId,
        scope: k.scope,
        from: presenter,
        outOfScope: (message: string) => refusal("wrong_scope").pipe(Effect.zipRight(new HubApi.Forbidden({ message }))),
        limited: (message: string) => refusal("rate_limited").pipe(Effect.zipRight(new HubApi.TooManyRequests({ message })))
      }
    }
    const apiKey = (secret: string, presenter: AgentAuth.Presenter) =>
      Effect.map(AgentAuth.authenticateApiKey(secret, presenter, failures), (k) => callerOf(k, presenter, secret.slice(0, 8)))
    /**
     * The caller of a console session cookie: its key's, for GET only (the console reads). No cookie, or one that is
     * not a live session, fails without a record: the bearer scheme, tried next, then answers (and records).
     */
    const session = (cookie: Redacted.Redacted<string>) =>
      answered(Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        const id = Redacted.value(cookie)
        if (id === "" || request.method !== "GET") {
          return yield* new HubApi.Unauthorized({ message: "no console session" })
        }
        const presenter = yield* from
        const live = yield* sessions.current(id, presenter)
        if (Option.isNone(live)) return yield* new HubApi.Unauthorized({ message: "the console session has ended" })
        return callerOf(live.value, presenter, undefined)
      }))
    const agent = (secret: string, presenter: AgentAuth.Presenter) =>
      Effect.map(AgentAuth.authenticateAgent(secret, presenter, failures), (a) => ({
        agentId: a.agentId,
        workspaceId: a.workspaceId
      }))
    return Context.make(HubApi.ApiKeyAuth, {
      session,
      bearer: () =>
        answered(Effect.gen(function*() {
          const { secret, from } = yield* presented
          if (!secret.startsWith("pc_")) {
            return yield* new HubApi.Forbidden({ message: "this endpoint needs an API key (pc_…)" })
          }
          return yield* apiKey(secret, from)
        }))
    }).pipe(
      Context.add(HubApi.AgentTokenAuth, {
        bearer: () =>
          answered(Effect.gen(function*() {
            const { secret, from } = yield* presented
            if (secret.startsWith("pc_")) {
              return yield* new HubApi.Forbidden({ message: "rotate with the agent's own token" })
            }
            return yield* agent(secret, from)
          }))
      }),
      Context.add(HubApi.WorkspaceAuth, {
        session,
        bearer: () =>
          answered(Effect.gen(function*() {
            const { secret, from } = yield* presented
            return secret.startsWith("pc_") ? yield* apiKey(secret, from) : yield* agent(secret, from)
          }))
      })
    )
  })
)

/** `POST /v1/agents`, `POST /v1/agents/rotate`, `GET /v1/agents`. */
export const Agents = HttpApiBuilder.group(HubApi.HubApi, "agents", (handlers) =>
  Effect.gen(function*() {
    const settings = yield* AgentAuth.TokenSettings
    const config = yield* HubConfig
    const maxBody = (config.limits ?? DEFAULT_LIMITS).maxBodyBytes
    const from = presenter(ClientAddress.make(config.trustProxy))
    return handlers
      // Raw: the body is read by HttpEdge.jsonBody (413 within the limit), then decoded with the declared schema.
      .handleRaw("provision", () =>
        Effect.gen(function*() {
          const key = yield* HubApi.ApiKeyCaller
          const body = yield* HttpEdge.jsonBody(HubApi.ProvisionRequest, maxBody)
          // `--ttl` (5m–30d): this agent's token lifetime, kept by its rotations; else the hub's default.
          const ttlMs = body.ttl === undefined ? undefined : yield* Either.match(AgentDecider.parseTtl(body.ttl), {
            onLeft: (message) => Effect.fail(new HubApi.BadRequest({ message })),
            onRight: Effect.succeed
          })
          // The hub's lifetime (CONNECT_TOKEN_TTL_DAYS) is the operator's ceiling: no key asks for longer.
          if (ttlMs !== undefined && ttlMs > AgentAuth.ttlMsOf(settings)) {
            return yield* new HubApi.BadRequest({
              message: `--ttl ${body.ttl} is longer than this hub allows: at most ${settings.ttlDays}d (CONNECT_TOKEN_TTL_DAYS)`
            })
          }
          const presented = yield* from
          const agentId = AgentId.make(uuidv7())
          const token = generateAgentToken()
          const now = settings.now()
          const expiresAt = ttlMs === undefined ? AgentAuth.expiryFrom(settings, now) : new Date(now.getTime() + ttlMs)
          yield* Command.handle(
            AgentDecider.decider,
            Streams.agent(agentId),
            {
              _tag: "ProvisionAgent",
              agentId,
              label: body.label ?? "agent",
              tokenHash: Sha256Hex.make(sha256Hex(token)),
              expiresAt,
              ...(ttlMs === undefined ? {} : { ttlMs })
            },
            { workspaceId: key.workspaceId, meta: metaOf({ kind: "apikey", id: key.apiKeyId }, presented) }
          ).pipe(answerWithin("the agent may still be provisioned, its token unseen: `connect hub agent list` (or GET /v1/agents) shows it; revoke it"))
          return { agentId, workspaceId: key.workspaceId, token, expiresAt: expiresAt.toISOString() }
        }).pipe(
          Effect.catchTags({ DomainError: refusal, EventLogError: unavailable, VersionConflict: unavailable })
        ))
      .handle("rotate", () =>
        Effect.gen(function*() {
          const agent = yield* HubApi.AgentCaller
          const presented = yield* from
          const token = generateAgentToken()
          const now = settings.now()
          const expiresAt = AgentAuth.expiryFrom(settings, now)
          const { events } = yield* Command.handle(
            AgentDecider.decider,
            Streams.agent(agent.agentId),
            {
              _tag: "RotateAgentToken",
              agentId: agent.agentId,
              newTokenHash: sha256Hex(token),
              newExpiresAt: expiresAt,
              now
            },
            { workspaceId: agent.workspaceId, meta: metaOf({ kind: "agent", id: agent.agentId }, presented) }
          ).pipe(answerWithin(
            "the rotation may still be recorded, its new token unseen: the token you hold would then stay valid for the " +
              "grace period only (24 h at most), so rotate again (`connect up --rotate-token`)"
          ))
          // The decider's: an agent provisioned with --ttl keeps its lifetime, and the grace is capped by it.
          const rotated = events[0]
          const oldValidUntil = rotated?._tag === "AgentTokenRotated" ? rotated.oldValidUntil : now
          const newExpiresAt = rotated?._tag === "AgentTokenRotated" ? rotated.newExpiresAt : expiresAt
          return { token, expiresAt: newExpiresAt.toISOString(), oldValidUntil: oldValidUntil.toISOString() }
        }).pipe(
          Effect.catchTags({ DomainError: refusal, EventLogError: unavailable, VersionConflict: unavailable })
        ))
      .handle("list", () =>
        Effect.gen(function*() {
          const key = yield* HubApi.ApiKeyCaller
          const rows = yield* AgentsTable.listInWorkspace(key.workspaceId)
          return {
            agents: rows.map((r) => ({
              agentId: r.id,
              label: r.label,
              online: r.connected && r.revoked_at === null,
              // A workspace key is answered with the address masked, as the audit API does (audit/Reveal.ts).
              lastIp: key.scope === "operator" ? r.last_ip : showIp(r.last_ip, false),
              tokenExpiresAt: new Date(r.token_expires_at).toISOString(),
              revoked: r.revoked_at !== null,
              createdAt: new Date(r.created_at).toISOString()
            }))
          }
        }).pipe(Effect.catchTag("SqlError", unavailable)))
  }))

/**
 * `GET /v1/services`: the workspace's, then those live shares of other workspaces grant (to the calling agent, or to
 * any agent of the workspace for an API key), marked `shared` with the owner workspace's name.
 */
export const Services = HttpApiBuilder.group(HubApi.HubApi, "services", (handlers) =>
  Effect.gen(function*() {
    const settings = yield* AgentAuth.TokenSettings
    return handlers.handle("list", () =>
      Effect.gen(function*() {
        const caller = yield* HubApi.WorkspaceCaller
        const rows = yield* ServicesTable.listInWorkspace(caller.workspaceId)
        const shared = yield* SharesTable.sharedWith(caller.workspaceId, caller.agentId, settings.now())
        return {
          services: [
            ...rows.map((r) => ({ name: r.name, agentId: r.agent_id, agentLabel: r.label, online: r.online })),
            ...shared.map((s) => ({
              name: s.name,
              agentId: "",
              agentLabel: "",
              online: s.online,
              shared: { shareId: s.share_id, workspaceId: s.owner_id, workspaceName: s.owner_name ?? s.owner_id }
            }))
          ]
        }
      }).pipe(Effect.catchTag("SqlError", unavailable)))
  }))
