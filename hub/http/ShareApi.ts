/**
 * The hub's side of the `shares` group of core/HubApi.ts: shares created, listed and revoked with an API key of the
 * owner workspace, and joined with the token of an agent of another workspace. A share's code is drawn by
 * hub/commands/Shares.ts and shown once in the create answer; the log and the read model keep its SHA-256. The options
 * are checked here (400 naming the bad one); a refused join is recorded, coalesced per agent, share and reason, through
 * the hub's spool while the log is unavailable, as the relay's refusals are.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import { Effect, Option, Schema } from "effect"
import type { DomainError } from "../../core/DomainError.ts"
import { EventMeta } from "../../core/Events.ts"
import * as HubApi from "../../core/HubApi.ts"
import { parseDuration, parseRateLimit } from "../../core/ShareDecider.ts"
import { CAPS, sanitize } from "../../core/Text.ts"
import * as AgentAuth from "../commands/AgentAuth.ts"
import * as ShareDenials from "../commands/ShareDenials.ts"
import * as Shares from "../commands/Shares.ts"
import * as FactRecorder from "../eventlog/FactRecorder.ts"
import { HubSpool } from "../relay/HubSpool.ts"
import { answerWithin } from "./AnswerWithin.ts"
import * as ClientAddress from "./ClientAddress.ts"
import * as HttpEdge from "./HttpEdge.ts"
import { DEFAULT_DENIAL_WINDOW_MS, DEFAULT_LIMITS, HubConfig } from "../HubConfig.ts"
import * as SharesTable from "../readmodels/Shares.ts"

/** A new share's lifetime when `expires` is not given: 7 days. */
export const DEFAULT_EXPIRY_MS = 7 * 86_400_000

const unavailable = (error: unknown) =>
  Effect.zipRight(
    Effect.logError("shares API: request failed", error),
    new HubApi.Unavailable({ message: "the hub cannot reach its event log; try again" })
  )

const refusal = (error: DomainError) => {
  switch (error.reason) {
    case "NotFound":
      return new HubApi.NotFound({ message: error.message })
    case "Revoked":
      return new HubApi.Revoked({ message: error.message })
    default:
      return new HubApi.Invalid({ message: error.message })
  }
}

const isUuid = Schema.is(Schema.UUID)

/** The options of a create request, checked: 400 naming the first bad one. */
const checked = (body: typeof HubApi.ShareCreateRequest.Type) =>
  Effect.gen(function*() {
    const bad = (message: string) => new HubApi.Invalid({ message })
    for (const name of body.services) {
      if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(name)) {
        return yield* bad(`services: ${JSON.stringify(sanitize(name, 70))} is not a service name`)
      }
    }
    const expiresInMs = body.expires === undefined ? DEFAULT_EXPIRY_MS : parseDuration(body.expires)
    if (expiresInMs === undefined) {
      return yield* bad(`expires: ${JSON.stringify(sanitize(body.expires, 45))} is not a duration like 30m, 12h or 7d`)
    }
    const rateLimit = body.rateLimit === undefined ? undefined : parseRateLimit(body.rateLimit)
    if (body.rateLimit !== undefined && rateLimit === undefined) {
      return yield* bad(`rateLimit: ${JSON.stringify(sanitize(body.rateLimit, 45))} is not a rate like 60/min or 5/s`)
    }
    return {
      services: body.services,
      expiresInMs,
      ...(body.name === undefined ? {} : { name: body.name }),
      ...(rateLimit === undefined ? {} : { rateLimit })
    }
  })

/** `POST /v1/shares`, `GET /v1/shares`, `POST /v1/shares/:shareId/revoke`, `POST /v1/shares/join`. */
export const Handlers = HttpApiBuilder.group(HubApi.HubApi, "shares", (handlers) =>
  Effect.gen(function*() {
    const settings = yield* AgentAuth.TokenSettings
    const config = yield* HubConfig
    const maxBody = (config.limits ?? DEFAULT_LIMITS).maxBodyBytes
    const trusted = ClientAddress.make(config.trustProxy)
    // A refused join is answered at once: its record goes on in the background, whatever the log does meanwhile. A
    // refusal already happened, so it is recorded as the relay's are (FactRecorder.ts): retried, then spooled while
    // the log is unavailable (the gateway replays the spool), never only logged.
    const facts = yield* FactRecorder.make(yield* HubSpool)
    const denials = yield* ShareDenials.make({
      window: config.denialWindowMs ?? DEFAULT_DENIAL_WINDOW_MS,
      background: true,
      record: facts.record
    })
    const from = Effect.map(HttpServerRequest.HttpServerRequest, (request) => {
      const userAgent = request.headers["user-agent"]
      const peer = Option.getOrElse(request.remoteAddress, () => "unknown")
      return {
        ip: AgentAuth.ipOf(ClientAddress.resolve(trusted, peer, request.headers["x-forwarded-for"])),
        userAgent: userAgent === undefined ? undefined : sanitize(userAgent, CAPS.label)
      }
    })
    const metaOf = (actor: { readonly kind: "apikey" | "agent"; readonly id: string }, f: AgentAuth.Presenter) =>
      new EventMeta({ actor, sourceIp: f.ip, ...(f.userAgent ? { userAgent: f.userAgent } : {}) })
    return handlers
      // Raw: the body is read by HttpEdge.jsonBody (413 within the limit), then decoded with the declared schema.
      .handleRaw("create", () =>
        Effect.gen(function*() {
          const key = yield* HubApi.ApiKeyCaller
          const body = yield* HttpEdge.jsonBody(HubApi.ShareCreateRequest, maxBody)
          const request = yield* checked(body)
          const presented = yield* from
          const meta = metaOf({ kind: "apikey", id: key.apiKeyId }, presented)
          return yield* Shares.create(key.workspaceId, request, meta, settings.now()).pipe(
            answerWithin("the share may still be created, its code unseen: `connect share list` shows it, revoke it there")
          )
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
          const now = settings.now()
          const rows = yield* SharesTable.listInWorkspace(key.workspaceId)
          return { shares: rows.map((r) => Shares.infoOf(r, now)) }
        }).pipe(Effect.catchTag("SqlError", unavailable)))
      .handle("revoke", ({ path }) =>
        Effect.gen(function*() {
          const key = yield* HubApi.ApiKeyCaller
          if (!isUuid(path.shareId)) {
            return yield* new HubApi.Invalid({ message: "the share id must be a UUID (see `connect share list`)" })
          }
          const presented = yield* from
          const shareId = path.shareId.toLowerCase()
          const { revoked } = yield* Shares.revoke(key.workspaceId, shareId, metaOf({ kind: "apikey", id: key.apiKeyId }, presented)).pipe(
            answerWithin("the revocation may still be recorded: `connect share list` shows whether it was")
          )
          return { shareId, revoked }
        }).pipe(
          Effect.catchTags({
            DomainError: refusal,
            EventLogError: unavailable,
            VersionConflict: unavailable,
            SqlError: unavailable
          })
        ))
      .handleRaw("join", () =>
        Effect.gen(function*() {
          const agent = yield* HubApi.AgentCaller
          const body = yield* HttpEdge.jsonBody(HubApi.ShareJoinRequest, maxBody)
          const presented = yield* from
          return yield* Shares.join(
            body.code,
            { agentId: agent.agentId, workspaceId: agent.workspaceId, ip: presented.ip },
            denials,
            metaOf({ kind: "agent", id: agent.agentId }, presented),
            settings.now()
          ).pipe(answerWithin("the join may still be recorded: run `connect join` again to know (it answers \"already joined\" if it was)"))
        }).pipe(
          Effect.catchTags({
            DomainError: refusal,
            EventLogError: unavailable,
            VersionConflict: unavailable,
            SqlError: unavailable
          })
        ))
  }))
