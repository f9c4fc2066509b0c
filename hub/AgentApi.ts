/**
 * The agent HTTP API (JSON, `Authorization: Bearer <secret>`): provisioning agents with an API key, rotating an
 * agent's token, and listing the caller's workspace's agents and services. Errors are `{"error":{"code","message"}}`
 * with 400/401/403/404/405/413/429/503 (429: too many failed credentials from the address). Bodies are at most `HttpLimits.maxBodyBytes`; malformed input (a label with U+0000
 * or a lone surrogate) is 400, while text recorded only for the audit (the user agent) is sanitised, never refused.
 *
 *   POST /v1/agents         (API key)  {"label"?}  → 201 {"agentId","workspaceId","token","expiresAt"}
 *   POST /v1/agents/rotate  (agent token)          → 200 {"token","expiresAt","oldValidUntil"}
 *   GET  /v1/agents         (API key)              → 200 {"agents":[{"agentId","label","online","lastIp",...}]}
 *   GET  /v1/services       (API key or agent)     → 200 {"services":[{"name","agentId","agentLabel","online"}]}
 */
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { SqlClient } from "@effect/sql"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import { Effect, Layer, Option } from "effect"
import * as AgentDecider from "../core/AgentDecider.ts"
import { EventLog } from "../core/EventLog.ts"
import { EventMeta, Sha256Hex } from "../core/Events.ts"
import { AgentId, Streams, uuidv7 } from "../core/Ids.ts"
import { generateAgentToken, sha256Hex } from "../core/Secrets.ts"
import { Caps, isRecordable, sanitize } from "../core/Text.ts"
import * as AgentAuth from "./AgentAuth.ts"
import * as AuthFailures from "./AuthFailures.ts"
import * as ClientAddress from "./ClientAddress.ts"
import * as Command from "./Command.ts"
import * as HttpEdge from "./HttpEdge.ts"
import { errorResponse as error, HubRouter } from "./HttpApi.ts"
import { DEFAULT_LIMITS, HubConfig } from "./HubConfig.ts"
import * as Scoped from "./Scoped.ts"

/** A request that is answered with an error response instead of going on. */
class Refused {
  constructor(readonly response: HttpServerResponse.HttpServerResponse) {}
}

const refuse = (status: number, code: string, message: string) => Effect.fail(new Refused(error(status, code, message)))

/** Maps every failure of a handler to a JSON error: refusals as given, auth failures 401, anything else 503. */
const respond = <R>(
  effect: Effect.Effect<HttpServerResponse.HttpServerResponse, unknown, R>
): Effect.Effect<HttpServerResponse.HttpServerResponse, never, R> =>
  effect.pipe(
    Effect.catchAll((e) => {
      if (e instanceof Refused) return Effect.succeed(e.response)
      if (e instanceof AgentAuth.AuthFailed) {
        return Effect.succeed(
          e.reason === "rate_limited" ? error(429, "TooManyRequests", e.message) : error(401, "Unauthorized", e.message)
        )
      }
      if (typeof e === "object" && e !== null && "_tag" in e && e._tag === "DomainError") {
        const d = e as unknown as { reason: string; message: string }
        const status = d.reason === "NotFound" ? 404 : d.reason === "Invalid" ? 400 : d.reason === "Revoked" ? 401 : 409
        return Effect.succeed(error(status, d.reason, d.message))
      }
      return Effect.as(
        Effect.logError("agent API: request failed", e),
        error(503, "Unavailable", "the hub cannot reach its event log; try again")
      )
    }),
    Effect.catchAllDefect((defect) =>
      Effect.as(Effect.logError("agent API: defect", defect), error(500, "Internal", "internal error"))
    )
  )

const bearer = Effect.gen(function*() {
  const request = yield* HttpServerRequest.HttpServerRequest
  const header = request.headers["authorization"] ?? ""
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header)
  if (!match) return yield* refuse(401, "Unauthorized", "missing Authorization: Bearer <API key or agent token>")
  return match[1]!
})

/** The client's address (through trusted proxies) and its user agent, sanitised for the record. */
const clientOf = (trusted: ClientAddress.TrustedProxies) =>
  Effect.map(HttpServerRequest.HttpServerRequest, (request) => {
    const userAgent = request.headers["user-agent"]
    const peer = Option.getOrElse(request.remoteAddress, () => "unknown")
    return {
      ip: AgentAuth.ipOf(ClientAddress.resolve(trusted, peer, request.headers["x-forwarded-for"])),
      userAgent: userAgent === undefined ? undefined : sanitize(userAgent, Caps.label)
    }
  })

/** The request's API key, checked; a refusal is recorded (coalesced per address past its limit). */
const apiKeyOnly = (client: AgentAuth.Presenter, failures: AuthFailures.AuthFailures) =>
  Effect.gen(function*() {
    const secret = yield* bearer
    if (!secret.startsWith("pc_")) return yield* refuse(403, "Forbidden", "this endpoint needs an API key (pc_…)")
    return yield* AgentAuth.authenticateApiKey(secret, client, failures)
  })

const tooLarge = (max: number) =>
  Effect.fail(
    new Refused(
      error(413, "BodyTooLarge", `the request body is larger than ${max} bytes`, { headers: { connection: "close" } })
    )
  )

/** The JSON object body, at most `max` bytes: a larger Content-Length is refused unread, a chunked body at the limit. */
const readBody = (max: number) => Effect.gen(function*() {
  const request = yield* HttpServerRequest.HttpServerRequest
  if (Number(request.headers["content-length"] ?? 0) > max) return yield* tooLarge(max)
  const text = yield* HttpEdge.readText(NodeHttpServerRequest.toIncomingMessage(request), max).pipe(
    Effect.catchTag("BodyError", (e) =>
      e.reason === "TooLarge" ? tooLarge(max) : refuse(400, "BadRequest", "unreadable request body"))
  )
  if (text.trim() === "") return {} as Record<string, unknown>
  const parsed = yield* Effect.try(() => JSON.parse(text) as unknown).pipe(
    Effect.orElse(() => refuse(400, "BadRequest", "the body is not JSON"))
  )
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    return yield* refuse(400, "BadRequest", "the body must be a JSON object")
  }
  return parsed as Record<string, unknown>
})

/** The agent API routes on `HubRouter`. */
export const routes: Layer.Layer<
  never,
  never,
  EventLog | SqlClient.SqlClient | AgentAuth.TokenSettings | HubConfig
> = HubRouter.use(
  (router) =>
    Effect.gen(function*() {
      const context = yield* Effect.context<EventLog | SqlClient.SqlClient | AgentAuth.TokenSettings>()
      const settings = yield* AgentAuth.TokenSettings
      const sql = yield* SqlClient.SqlClient
      const config = yield* HubConfig
      const maxBody = (config.limits ?? DEFAULT_LIMITS).maxBodyBytes
      const requestClient = clientOf(ClientAddress.make(config.trustProxy))
      const authFailures = yield* AuthFailures.make()
      const apiKey = Effect.flatMap(requestClient, (client) => apiKeyOnly(client, authFailures))
      const handler = <R>(effect: Effect.Effect<HttpServerResponse.HttpServerResponse, unknown, R>) =>
        respond(effect).pipe(Effect.provide(context)) as Effect.Effect<
          HttpServerResponse.HttpServerResponse,
          never,
          Exclude<R, EventLog | SqlClient.SqlClient | AgentAuth.TokenSettings>
        >

      yield* router.post(
        "/v1/agents",
        handler(Effect.gen(function*() {
          const key = yield* apiKey
          const body = yield* readBody(maxBody)
          const client = yield* requestClient
          const label = body.label === undefined ? "agent" : body.label
          if (typeof label !== "string" || label.trim() === "" || label.length > 200) {
            return yield* refuse(400, "BadRequest", "label must be a non-empty string of at most 200 characters")
          }
          if (!isRecordable(label)) {
            return yield* refuse(400, "BadRequest", "label must not contain U+0000 or an unpaired surrogate")
          }
          const agentId = AgentId.make(uuidv7())
          const token = generateAgentToken()
          const expiresAt = AgentAuth.expiryFrom(settings, settings.now())
          yield* Command.handle(
            AgentDecider.decider,
            Streams.agent(agentId),
            { _tag: "ProvisionAgent", agentId, label, tokenHash: Sha256Hex.make(sha256Hex(token)), expiresAt },
            {
              workspaceId: key.workspaceId,
              meta: new EventMeta({
                actor: { kind: "apikey", id: key.apiKeyId },
                sourceIp: client.ip,
                ...(client.userAgent ? { userAgent: client.userAgent } : {})
              })
            }
          )
          return HttpServerResponse.unsafeJson(
            { agentId, workspaceId: key.workspaceId, token, expiresAt: expiresAt.toISOString() },
            { status: 201 }
          )
        }))
      )

      yield* router.post(
        "/v1/agents/rotate",
        handler(Effect.gen(function*() {
          const secret = yield* bearer
          const client = yield* requestClient
          if (secret.startsWith("pc_")) return yield* refuse(403, "Forbidden", "rotate with the agent's own token")
          const agent = yield* AgentAuth.authenticateAgent(secret, client, authFailures)
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
            {
              workspaceId: agent.workspaceId,
              meta: new EventMeta({
                actor: { kind: "agent", id: agent.agentId },
                sourceIp: client.ip,
                ...(client.userAgent ? { userAgent: client.userAgent } : {})
              })
            }
          )
          const rotated = events[0]
          const oldValidUntil = rotated?._tag === "AgentTokenRotated" ? rotated.oldValidUntil : now
          return HttpServerResponse.unsafeJson({
            token,
            expiresAt: expiresAt.toISOString(),
            oldValidUntil: oldValidUntil.toISOString()
          })
        }))
      )

      yield* router.get(
        "/v1/agents",
        handler(Effect.gen(function*() {
          const key = yield* apiKey
          const rows = yield* Scoped.withWorkspace(
            key.workspaceId,
            sql.unsafe<{
              id: string
              label: string
              connected: boolean
              last_ip: string | null
              token_expires_at: Date
              revoked_at: Date | null
              created_at: Date
            }>(
              `select id, label, connected, last_ip, token_expires_at, revoked_at, created_at
                 from agents order by created_at, id`
            )
          )
          return HttpServerResponse.unsafeJson({
            agents: rows.map((r) => ({
              agentId: r.id,
              label: r.label,
              online: r.connected && r.revoked_at === null,
              lastIp: r.last_ip,
              tokenExpiresAt: new Date(r.token_expires_at).toISOString(),
              revoked: r.revoked_at !== null,
              createdAt: new Date(r.created_at).toISOString()
            }))
          })
        }))
      )

      yield* router.get(
        "/v1/services",
        handler(Effect.gen(function*() {
          const secret = yield* bearer
          const client = yield* requestClient
          const workspaceId = secret.startsWith("pc_")
            ? (yield* AgentAuth.authenticateApiKey(secret, client, authFailures)).workspaceId
            : (yield* AgentAuth.authenticateAgent(secret, client, authFailures)).workspaceId
          const rows = yield* Scoped.withWorkspace(
            workspaceId,
            sql.unsafe<{ name: string; agent_id: string; label: string; online: boolean }>(
              `select s.name, s.agent_id, a.label, (a.connected and a.revoked_at is null) as online
                 from services s join agents a on a.id = s.agent_id
                where s.exposed order by s.name`
            )
          )
          return HttpServerResponse.unsafeJson({
            services: rows.map((r) => ({ name: r.name, agentId: r.agent_id, agentLabel: r.label, online: r.online }))
          })
        }))
      )
    })
)
