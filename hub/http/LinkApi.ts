/**
 * The hub's side of the `links` group of core/HubApi.ts: public HTTP links created, listed and revoked with an API key
 * of the workspace. A link's token is drawn here and shown once in the answer; the log and the read model keep its
 * SHA-256. The options are checked by core/LinkRules.ts (400 naming the bad one), the service must be one of the
 * workspace's, and every change is a command on the link's stream (core/LinkDecider.ts).
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import { Effect, Either, Schema } from "effect"
import type { DomainError } from "../../core/DomainError.ts"
import { EventMeta, ServiceName } from "../../core/Events.ts"
import * as HubApi from "../../core/HubApi.ts"
import { LinkId, Streams, uuidv7 } from "../../core/Ids.ts"
import * as LinkDecider from "../../core/LinkDecider.ts"
import * as LinkRules from "../../core/LinkRules.ts"
import { sha256Hex } from "../../core/Secrets.ts"
import * as ServiceDecider from "../../core/ServiceDecider.ts"
import { isRecordable } from "../../core/Text.ts"
import * as AgentAuth from "../commands/AgentAuth.ts"
import * as Command from "../commands/Command.ts"
import * as HttpEdge from "./HttpEdge.ts"
import { LinkNotices } from "./LinkNotices.ts"
import { DEFAULT_LIMITS, HubConfig, publicUrlOf } from "../HubConfig.ts"
import * as Links from "../readmodels/Links.ts"
import { answerWithin } from "./AnswerWithin.ts"

const unavailable = (error: unknown) =>
  Effect.zipRight(
    Effect.logError("links API: request failed", error),
    new HubApi.Unavailable({ message: "the hub cannot reach its event log; try again" })
  )

const refusal = (error: DomainError) =>
  error.reason === "NotFound"
    ? new HubApi.NotFound({ message: error.message })
    : new HubApi.Invalid({ message: error.message })

/** `Either` of a rule as the API's 400. */
const rule = <A>(result: Either.Either<A, string>) =>
  Either.isRight(result) ? Effect.succeed(result.right) : Effect.fail(new HubApi.Invalid({ message: result.left }))

/** A link row as the API lists it, its status as of `now`. */
export const infoOf = (row: Links.Row, now: Date) => ({
  linkId: row.id,
  service: row.service_name ?? row.service_id,
  status: row.revoked_at !== null
    ? "revoked" as const
    : new Date(row.expires_at).getTime() <= now.getTime()
    ? "expired" as const
    : "active" as const,
  expiresAt: new Date(row.expires_at).toISOString(),
  methods: row.methods,
  paths: row.path_prefixes,
  rateLimitPerMinute: row.rate_limit_per_minute,
  createdAt: new Date(row.created_at).toISOString(),
  revokedAt: row.revoked_at === null ? null : new Date(row.revoked_at).toISOString()
})

const isServiceName = Schema.is(ServiceName)
const isUuid = Schema.is(Schema.UUID)

/** `POST /v1/links`, `GET /v1/links`, `POST /v1/links/:linkId/revoke`. */
export const Handlers = HttpApiBuilder.group(HubApi.HubApi, "links", (handlers) =>
  Effect.gen(function*() {
    const settings = yield* AgentAuth.TokenSettings
    const config = yield* HubConfig
    const maxBody = (config.limits ?? DEFAULT_LIMITS).maxBodyBytes
    const notices = yield* Effect.serviceOption(LinkNotices)
    const meta = (key: HubApi.ApiKeyCaller["Type"]) =>
      new EventMeta({
        actor: { kind: "apikey", id: key.apiKeyId },
        sourceIp: key.from.ip,
        ...(key.from.userAgent ? { userAgent: key.from.userAgent } : {})
      })
    return handlers
      .handleRaw("create", () =>
        Effect.gen(function*() {
          const key = yield* HubApi.ApiKeyCaller
          const body = yield* HttpEdge.jsonBody(HubApi.LinkCreateRequest, maxBody)
          if (!isRecordable(body.service) || !isServiceName(body.service)) {
            return yield* new HubApi.Invalid({ message: "service: expected a service name of this workspace" })
          }
          const expiresMs = yield* rule(body.expires === undefined ? Either.right(LinkRules.DEFAULT_EXPIRES_MS) : LinkRules.parseExpires(body.expires))
          const methods = yield* rule(body.methods === undefined ? Either.right(LinkRules.DEFAULT_METHODS) : LinkRules.checkMethods(body.methods))
          const paths = yield* rule(body.paths === undefined ? Either.right(LinkRules.DEFAULT_PATHS) : LinkRules.checkPaths(body.paths))
          const rate = yield* rule(body.rateLimit === undefined ? Either.right(LinkRules.DEFAULT_RATE_PER_MINUTE) : LinkRules.parseRate(body.rateLimit))
          if (!(yield* Links.serviceInWorkspace(key.workspaceId, body.service))) {
            return yield* new HubApi.NotFound({
              message: `no service ${body.service} in this workspace; expose it first (connect expose ${body.service} HOST:PORT)`
            })
          }
          const linkId = LinkId.make(uuidv7())
          const token = LinkRules.generateLinkToken()
          const now = settings.now()
          yield* Command.handle(LinkDecider.decider, Streams.link(linkId), {
            _tag: "CreateLink",
            linkId,
            workspaceId: key.workspaceId,
            serviceId: ServiceDecider.serviceIdFor(key.workspaceId, body.service),
            serviceName: body.service,
            tokenHash: sha256Hex(token),
            expiresAt: new Date(now.getTime() + expiresMs),
            now,
            methods,
            pathPrefixes: paths,
            rateLimitPerMinute: rate
          }, { workspaceId: key.workspaceId, meta: meta(key) }).pipe(
            answerWithin("the link may still be created, its token unseen: `connect link list` shows it, revoke it there")
          )
          const row = yield* Links.inWorkspace(key.workspaceId, linkId)
          const request = NodeHttpServerRequest.toIncomingMessage(yield* HttpServerRequest.HttpServerRequest)
          const base = publicUrlOf(config, request.socket.localPort ?? config.port)
          const scheme = base.startsWith("http://") ? "http" : "https"
          return {
            ...infoOf(row!, now),
            token,
            url: `${base}/l/${token}/`,
            domainUrl: config.linkDomain ? `${scheme}://${token}.${config.linkDomain}/` : null
          }
        }).pipe(
          Effect.catchTags({
            DomainError: refusal,
            EventLogError: unavailable,
            VersionConflict: unavailable,
            SqlError: unavailable
          })
        ))
      .handle("list", () =>
        Effect.gen(function*() {
          const key = yield* HubApi.ApiKeyCaller
          const rows = yield* Links.listInWorkspace(key.workspaceId)
          const now = settings.now()
          return { links: rows.map((r) => infoOf(r, now)) }
        }).pipe(Effect.catchTag("SqlError", unavailable)))
      .handle("revoke", ({ path }) =>
        Effect.gen(function*() {
          const key = yield* HubApi.ApiKeyCaller
          const notFound = new HubApi.NotFound({ message: `no link ${path.linkId.slice(0, 40)} in this workspace; see connect link list` })
          if (!isUuid(path.linkId)) return yield* notFound
          // Ids are stored lower-case: an id typed in upper case names the same link (its stream name, which is
          // case-sensitive, once found it and then found the link live: the revoke did nothing).
          const id = path.linkId.toLowerCase()
          const row = yield* Links.inWorkspace(key.workspaceId, id)
          if (!row) return yield* notFound
          const linkId = LinkId.make(id)
          yield* Command.handle(
            LinkDecider.decider,
            Streams.link(linkId),
            { _tag: "RevokeLink", linkId, workspaceId: key.workspaceId },
            { workspaceId: key.workspaceId, meta: meta(key) }
          ).pipe(answerWithin("the revocation may still be recorded: `connect link list` shows whether it was"))
          if (notices._tag === "Some") notices.value.revoked(id)
          const after = yield* Links.inWorkspace(key.workspaceId, id)
          return { linkId: id, revokedAt: new Date(after?.revoked_at ?? settings.now()).toISOString() }
        }).pipe(
          Effect.catchTags({
            DomainError: refusal,
            EventLogError: unavailable,
            VersionConflict: unavailable,
            SqlError: unavailable
          })
        ))
  }))
