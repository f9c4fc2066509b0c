/**
 * The hub's HTTP API, declared once and schema only: the hub serves it (hub/http/AgentApi.ts) and the agent calls it
 * (agent/HubApi.ts). Requests carry `Authorization: Bearer <secret>` (an API key `pc_…` or an agent token); every
 * error answer is `{"error":{"code","message"}}` with the status its code has here.
 *
 *   POST /v1/agents         (API key)  {"label"?,"ttl"?} → 201 {"agentId","workspaceId","token","expiresAt"}
 *   POST /v1/agents/rotate  (agent token)          → 200 {"token","expiresAt","oldValidUntil"}
 *   GET  /v1/agents         (API key)              → 200 {"agents":[{"agentId","label","online","lastIp",...}]}
 *   GET  /v1/services       (API key or agent)     → 200 {"services":[{"name","agentId","agentLabel","online"}]}
 *   GET  /v1/audit/events   (API key)  ?since&until&type&workspace&agent&service&outcome&ip&limit&before
 *                                                  → 200 {"events":[{"position","id","type","data","meta",...}],"next"}
 *   GET  /v1/audit/tail     (API key)  ?after&type&workspace&agent&service&outcome&ip&limit&wait  or  ?after&tail&wait
 *                                                  → 200 {"tail","events":[...oldest first],"position"} (long poll)
 *   GET  /v1/audit/integrity (API key)             → 200 {"verify","checkpoint"} (the latest of each, or null)
 *   GET  /v1/audit/stats    (API key)  ?since&until&workspace&by&limit&reveal
 *                                                  → 200 {"asOf","events","byType","denials","services","agents",...}
 *   GET  /v1/audit/access   (API key)  ?service&at&workspace&reveal
 *                                                  → 200 {"text","access"} (who could reach the service then)
 *   POST /v1/links          (API key)  {"service","expires"?,"methods"?,"paths"?,"rateLimit"?}
 *                                                  → 201 {"linkId","url","domainUrl","token",...}
 *   GET  /v1/links          (API key)              → 200 {"links":[{"linkId","service","status","expiresAt",...}]}
 *   POST /v1/links/:linkId/revoke (API key)        → 200 {"linkId","revokedAt"}
 *
 *   POST /v1/shares         (API key)  {"services","expires"?,"name"?,"rateLimit"?} → 201 {"code","share"}
 *   GET  /v1/shares         (API key)              → 200 {"shares":[{"shareId","services","status",...}]}
 *   POST /v1/shares/:shareId/revoke (API key)      → 200 {"shareId","revoked"}
 *   POST /v1/shares/join    (agent token) {"code"} → 200 {"share","owner","joined"}
 *
 *   POST /v1/workspaces                      (operator key) {"name"}  → 201 {"workspaceId","name","apiKey":{...,"key"}}
 *   POST /v1/workspaces/:id/apikeys          (API key) {"name"?,"scope"?} → 201 {"apiKeyId","prefix","key","scope",...}
 *   GET  /v1/workspaces/:id/apikeys          (API key)              → 200 {"apiKeys":[{"apiKeyId","prefix","scope",...}]}
 *   POST /v1/apikeys/:apiKeyId/revoke        (API key)              → 200 {"apiKeyId","revoked"}
 *   GET  /v1/workspaces/:id/agents           (API key)              → 200 {"agents":[{"agentId","label","online",...}]}
 *   GET  /v1/workspaces/:id/services         (API key)              → 200 {"services":[{"name","agentId","agentLabel","online"}]}
 *   POST /v1/agents/:agentId/revoke          (API key) {"reason"?}  → 200 {"agentId","revoked","released"}
 *
 * To add endpoints, declare a group below and `.add` it to `HubApi`; the hub serves it with `HttpApiBuilder.group`.
 */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiMiddleware from "@effect/platform/HttpApiMiddleware"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as HttpApiSecurity from "@effect/platform/HttpApiSecurity"
import { Context, type Effect, ParseResult, Schema } from "effect"
import type { AgentId } from "./Ids.ts"
import { isRecordable } from "./Text.ts"

// ---------------------------------------------------------------------------------------------------------------------
// Error answers: one tagged error per code, sent as {"error":{"code":<its tag>,"message"}}

/** 400: the request is malformed (its body is not a JSON object, a field breaks its rule). */
export class BadRequest extends Schema.TaggedError<BadRequest>()("BadRequest", { message: Schema.String }) {}

/** 400: the business rules refuse the command as invalid. */
export class Invalid extends Schema.TaggedError<Invalid>()("Invalid", { message: Schema.String }) {}

/** 401: no credential, or one that is unknown, expired or revoked. */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", { message: Schema.String }) {}

/** 401: the agent the command is about has been revoked. */
export class Revoked extends Schema.TaggedError<Revoked>()("Revoked", { message: Schema.String }) {}

/** 403: a credential of the wrong kind (an agent token where an API key is needed, or the reverse). */
export class Forbidden extends Schema.TaggedError<Forbidden>()("Forbidden", { message: Schema.String }) {}

/** 404: what the command names does not exist. */
export class NotFound extends Schema.TaggedError<NotFound>()("NotFound", { message: Schema.String }) {}

/** 409: what the command creates exists already. */
export class AlreadyExists extends Schema.TaggedError<AlreadyExists>()("AlreadyExists", { message: Schema.String }) {}

/** 409: the command conflicts with the current state. */
export class Conflict extends Schema.TaggedError<Conflict>()("Conflict", { message: Schema.String }) {}

/** 413: the request body is larger than the hub takes (64 KiB by default); the hub closes the connection. */
export class BodyTooLarge extends Schema.TaggedError<BodyTooLarge>()("BodyTooLarge", { message: Schema.String }) {}

/** 429: too many refused credentials from the caller's address; refused without a look-up until its window ends. */
export class TooManyRequests extends Schema.TaggedError<TooManyRequests>()("TooManyRequests", {
  message: Schema.String
}) {}

/** 503: the hub cannot reach its event log, and fails closed; try again. */
export class Unavailable extends Schema.TaggedError<Unavailable>()("Unavailable", { message: Schema.String }) {}

const statuses: Record<string, number> = {}

/** `error` as the API sends it: `status`, with the body `{"error":{"code":<its tag>,"message"}}`. */
const answer = <Tag extends string, A extends { readonly _tag: Tag; readonly message: string }>(
  error: Schema.Schema<A, { readonly _tag: Tag; readonly message: string }> & { readonly _tag: Tag },
  status: number
) => {
  statuses[error._tag] = status
  return Schema.transform(
    Schema.Struct({ error: Schema.Struct({ code: Schema.Literal(error._tag), message: Schema.String }) }),
    error,
    {
      strict: true,
      decode: ({ error }) => ({ _tag: error.code, message: error.message }),
      encode: ({ _tag, message }) => ({ error: { code: _tag, message } })
    }
  ).annotations(HttpApiSchema.annotations({ status }))
}

/** Every error answer of the API, by code. */
export const Errors = {
  BadRequest: answer(BadRequest, 400),
  Invalid: answer(Invalid, 400),
  Unauthorized: answer(Unauthorized, 401),
  Revoked: answer(Revoked, 401),
  Forbidden: answer(Forbidden, 403),
  NotFound: answer(NotFound, 404),
  AlreadyExists: answer(AlreadyExists, 409),
  Conflict: answer(Conflict, 409),
  BodyTooLarge: answer(BodyTooLarge, 413),
  TooManyRequests: answer(TooManyRequests, 429),
  Unavailable: answer(Unavailable, 503)
}

/** The status an error answer is sent with, by its code (undefined for a code this API does not declare). */
export const statusOf = (code: string): number | undefined => statuses[code]

/**
 * What is wrong with a body that breaks its schema, in one line: the message of each issue (the rules below carry
 * messages that name their field).
 */
export const describeIssues = (error: ParseResult.ParseError): string =>
  ParseResult.ArrayFormatter.formatErrorSync(error).map((issue) => issue.message).join("; ")

// ---------------------------------------------------------------------------------------------------------------------
// Authentication: `Authorization: Bearer <API key or agent token>`, by what an endpoint takes

/** The caller of an endpoint that takes an API key. */
export class ApiKeyCaller extends Context.Tag("connect/HubApi/ApiKeyCaller")<ApiKeyCaller, {
  readonly apiKeyId: string
  readonly workspaceId: string
  /** `workspace`: reads its own workspace only; `operator`: reads every workspace. */
  readonly scope: "workspace" | "operator"
  /** Where the request came from (through the hub's trusted proxies) and its user agent, sanitised, for the record. */
  readonly from: { readonly ip: string; readonly userAgent?: string | undefined }
  /** Refuses the request as beyond the key's scope (403), recorded as every refused API key is (`wrong_scope`). */
  readonly outOfScope: (message: string) => Effect.Effect<never, Forbidden | Unavailable>
  /** Records a refusal of this key for a bound it reached (coalesced per address, as failed keys are) and answers 429. */
  readonly limited: (message: string) => Effect.Effect<never, TooManyRequests | Unavailable>
}>() {}

/** The caller of an endpoint that takes an agent token. */
export class AgentCaller extends Context.Tag("connect/HubApi/AgentCaller")<AgentCaller, {
  readonly agentId: AgentId
  readonly workspaceId: string
}>() {}

/** The caller of an endpoint that takes either credential: the workspace it acts in. */
export class WorkspaceCaller extends Context.Tag("connect/HubApi/WorkspaceCaller")<WorkspaceCaller, {
  readonly workspaceId: string
  /** The agent, when the credential is an agent token. */
  readonly agentId?: string
}>() {}

/** How a credential is refused: missing or bad (401), of the wrong kind (403), too many from the address (429). */
const AuthFailure = Schema.Union(Errors.Unauthorized, Errors.Forbidden, Errors.TooManyRequests, Errors.Unavailable)

/**
 * The web console's session cookie (hub/console/): an API key exchanged at `/ui` for a session of the same scope.
 * Tried before the bearer header, and only for GET (the console reads): without one, the bearer decides the answer.
 */
export const ConsoleSession = HttpApiSecurity.apiKey({ key: "connect_console", in: "cookie" })

/**
 * An API key (`pc_…`), or a console session made with one; an agent token is refused (403) without a look-up. Every
 * refused key is recorded.
 */
export class ApiKeyAuth extends HttpApiMiddleware.Tag<ApiKeyAuth>()("connect/HubApi/ApiKeyAuth", {
  security: { session: ConsoleSession, bearer: HttpApiSecurity.bearer },
  provides: ApiKeyCaller,
  failure: AuthFailure
}) {}

/** An agent token (current, or previous within its rotation grace); an API key is refused (403) without a look-up. */
export class AgentTokenAuth extends HttpApiMiddleware.Tag<AgentTokenAuth>()("connect/HubApi/AgentTokenAuth", {
  security: { bearer: HttpApiSecurity.bearer },
  provides: AgentCaller,
  failure: AuthFailure
}) {}

/** An API key or an agent token, told apart by the `pc_` prefix, or a console session. */
export class WorkspaceAuth extends HttpApiMiddleware.Tag<WorkspaceAuth>()("connect/HubApi/WorkspaceAuth", {
  security: { session: ConsoleSession, bearer: HttpApiSecurity.bearer },
  provides: WorkspaceCaller,
  failure: AuthFailure
}) {}

// ---------------------------------------------------------------------------------------------------------------------
// Bodies

/** A timestamp as ISO 8601 text in UTC (`2026-05-01T12:00:00.000Z`). */
const Timestamp = Schema.String.annotations({ description: "ISO 8601, UTC" })

const labelRule = "label must be a non-empty string of at most 200 characters"

/** An agent's label (a host name, say): 1–200 characters, not blank, without U+0000 or a lone surrogate (logged). */
export const Label = Schema.String.annotations({ message: () => labelRule }).pipe(
  Schema.filter((label) => label.trim() !== "" && label.length <= 200, { message: () => labelRule }),
  Schema.filter(isRecordable, { message: () => "label must not contain U+0000 or an unpaired surrogate" })
)

/** `POST /v1/agents`: the new agent's label (the hub's default: "agent"). */
export const ProvisionRequest = Schema.Struct({
  label: Schema.optionalWith(Label, { exact: true }),
  /** The token's lifetime as `connect up --ttl` takes it (`15m`, `7d`; 5m–30d, checked by the hub: a 400 names the range). */
  ttl: Schema.optionalWith(Schema.String.pipe(Schema.maxLength(40)), { exact: true })
})

/** A provisioned agent; its token is shown this once. */
export const Provisioned = Schema.Struct({
  agentId: Schema.String,
  workspaceId: Schema.String,
  token: Schema.String,
  expiresAt: Timestamp
})

/** A rotated token; the previous one stays valid until `oldValidUntil`. */
export const Rotated = Schema.Struct({ token: Schema.String, expiresAt: Timestamp, oldValidUntil: Timestamp })

/** One agent of the workspace. */
export const AgentInfo = Schema.Struct({
  agentId: Schema.String,
  label: Schema.String,
  online: Schema.Boolean,
  lastIp: Schema.NullOr(Schema.String),
  tokenExpiresAt: Timestamp,
  revoked: Schema.Boolean,
  createdAt: Timestamp
})

/** One exposed service of the workspace, or one another workspace shares with it (`shared`). */
export const ServiceInfo = Schema.Struct({
  name: Schema.String,
  agentId: Schema.String,
  agentLabel: Schema.String,
  online: Schema.Boolean,
  /** Shared by another workspace: the share and the owner workspace's id and name. */
  shared: Schema.optionalWith(
    Schema.Struct({ shareId: Schema.String, workspaceId: Schema.String, workspaceName: Schema.String }),
    { exact: true }
  )
})

/** One exposed service of the workspace. */
export type ServiceInfo = typeof ServiceInfo.Type

/** Most events one `GET /v1/audit/events` answers; a client pages further back with `before`. */
export const AUDIT_PAGE_LIMIT = 1000

/**
 * `GET /v1/audit/events`: the filters of `connect audit`, as typed there (checked by the hub: a bad one is a 400 naming
 * it), `limit` (1–1000, default 50) and `before` (a position: only events before it, for the next page).
 */
export const AuditEventsQuery = Schema.Struct({
  since: Schema.optional(Schema.String),
  until: Schema.optional(Schema.String),
  type: Schema.optional(Schema.String),
  workspace: Schema.optional(Schema.String),
  agent: Schema.optional(Schema.String),
  service: Schema.optional(Schema.String),
  outcome: Schema.optional(Schema.String),
  ip: Schema.optional(Schema.String),
  limit: Schema.optional(Schema.NumberFromString),
  before: Schema.optional(Schema.NumberFromString)
  // A misspelt filter (`outcom=denied`) must be refused, not ignored: it would widen the answer unnoticed.
}).annotations({ parseOptions: { onExcessProperty: "error" } })

/** One event of the log as stored: its chain fields, and its data and meta as JSON. */
export const AuditEvent = Schema.Struct({
  position: Schema.Number,
  id: Schema.String,
  stream: Schema.String,
  version: Schema.Number,
  workspaceId: Schema.NullOr(Schema.String),
  type: Schema.String,
  recordedAt: Timestamp,
  data: Schema.Unknown,
  meta: Schema.Unknown,
  /** Hex SHA-256 of the previous event, and of this one. */
  prevHash: Schema.String,
  hash: Schema.String
})

/** One event of the log as stored. */
export type AuditEvent = typeof AuditEvent.Type

/** A page of events, newest first; `next` is the `before` of the page after it (null on the last page). */
export const AuditEventsPage = Schema.Struct({ events: Schema.Array(AuditEvent), next: Schema.NullOr(Schema.Number) })

/** Longest a `GET /v1/audit/tail` waits for a new event before it answers with none, in seconds. */
export const AUDIT_TAIL_WAIT = 25

/**
 * `GET /v1/audit/tail`: the events after position `after` that pass the filters (those of `GET /v1/audit/events` but
 * the time range and paging), waiting up to `wait` seconds (0–25, default 25) for one to commit. The first request opens
 * a tail with its filters (recorded as one `AuditRead` of kind `tail`; without `after`, from the head now) and answers
 * its id; later ones name it with `tail`, give the last answer's `position` as `after`, and no filter (a tail keeps its
 * own). A tail ends a minute after its last request.
 */
export const AuditTailQuery = Schema.Struct({
  after: Schema.optional(Schema.NumberFromString),
  tail: Schema.optional(Schema.String),
  type: Schema.optional(Schema.String),
  workspace: Schema.optional(Schema.String),
  agent: Schema.optional(Schema.String),
  service: Schema.optional(Schema.String),
  outcome: Schema.optional(Schema.String),
  ip: Schema.optional(Schema.String),
  limit: Schema.optional(Schema.NumberFromString),
  wait: Schema.optional(Schema.NumberFromString)
}).annotations({ parseOptions: { onExcessProperty: "error" } })

/**
 * What a tail answers: its id, the new events oldest first (at most `limit`), and the position the answer is complete
 * up to — the `after` of the next request.
 */
export const AuditTailPage = Schema.Struct({
  tail: Schema.String,
  events: Schema.Array(AuditEvent),
  position: Schema.Number
})

/**
 * `GET /v1/audit/integrity`: the latest `connect audit verify` run on the log (an `AuditRead` of kind `verify`: its range,
 * count and `verified` intact or broken) and the latest `CheckpointSigned`, each null when there is none the key may
 * read (both are hub-level: an operator key's).
 */
export const AuditIntegrity = Schema.Struct({ verify: Schema.NullOr(AuditEvent), checkpoint: Schema.NullOr(AuditEvent) })

/**
 * `GET /v1/audit/stats`: the options of `connect audit --stats`, as typed there (checked by the hub: a bad one is a 400
 * naming it): `since`, `until`, `workspace` (an operator key's; a workspace key reads its own), `by` (type, agent,
 * service, ip, day or hour), `limit` (rows of the `by` breakdown, 1–10000, default 50) and `reveal` (`true`: source
 * addresses in full rather than masked; an operator key's alone — a workspace key is answered masked).
 */
export const AuditStatsQuery = Schema.Struct({
  since: Schema.optional(Schema.String),
  until: Schema.optional(Schema.String),
  workspace: Schema.optional(Schema.String),
  by: Schema.optional(Schema.String),
  limit: Schema.optional(Schema.NumberFromString),
  reveal: Schema.optional(Schema.Literal("true", "false"))
  // As for events: a misspelt option must be refused, not ignored.
}).annotations({ parseOptions: { onExcessProperty: "error" } })

const Count = Schema.Number

/** One event named by position, time and type. */
const AuditEventRef = Schema.Struct({ position: Count, at: Timestamp, type: Schema.String })

/**
 * The answer of `connect audit --stats` (audit/Stats.ts `Stats`, fields in its order), read from the hourly rollups:
 * exactly the log up to `asOf`, the position the rollups reflect (the hub follows the log into them; one it has not
 * reached yet is not counted).
 */
export const AuditStats = Schema.Struct({
  asOf: Count,
  /** Start of the first hour counted (inclusive) and end of the last (exclusive); null: unbounded. */
  from: Schema.NullOr(Timestamp),
  to: Schema.NullOr(Timestamp),
  workspace: Schema.NullOr(Schema.String),
  events: Count,
  first: Schema.NullOr(AuditEventRef),
  last: Schema.NullOr(AuditEventRef),
  byType: Schema.Array(Schema.Struct({ type: Schema.String, outcome: Schema.String, events: Count, count: Count })),
  denials: Schema.Array(
    Schema.Struct({ type: Schema.String, reason: Schema.NullOr(Schema.String), count: Count, events: Count })
  ),
  services: Schema.Array(Schema.Struct({
    id: Schema.String,
    name: Schema.NullOr(Schema.String),
    tunnels: Count,
    bytes: Count,
    denied: Count,
    events: Count
  })),
  agents: Schema.Array(Schema.Struct({
    id: Schema.String,
    label: Schema.NullOr(Schema.String),
    events: Count,
    tunnels: Count,
    bytes: Count,
    denied: Count,
    rotations: Count,
    ipChanges: Count
  })),
  addresses: Schema.Array(Schema.Struct({ address: Schema.String, count: Count, events: Count, denied: Count })),
  masked: Schema.Boolean,
  rotations: Count,
  ipChanges: Count,
  days: Schema.Array(Schema.Struct({ day: Schema.String, events: Count })),
  /** With `by=hour`: every hour of the window (`2026-05-01T13`, UTC), empty ones included. */
  hours: Schema.optional(Schema.Array(Schema.Struct({ hour: Schema.String, events: Count })))
})

/** The answer of `GET /v1/audit/stats`. */
export type AuditStats = typeof AuditStats.Type

/**
 * `GET /v1/audit/access`: the question of `connect audit access` — `service` (name or id), `at` (as `--at` takes it),
 * `workspace` (of the service, when its name is used in several; a workspace key reads its own) and `reveal` (`true`:
 * the agents' addresses in full rather than masked; an operator key's alone — a workspace key is answered masked).
 */
export const AuditAccessQuery = Schema.Struct({
  service: Schema.String,
  at: Schema.String,
  workspace: Schema.optional(Schema.String),
  reveal: Schema.optional(Schema.Literal("true", "false"))
}).annotations({ parseOptions: { onExcessProperty: "error" } })

/** Who could reach the service then: the report `connect audit access` prints, and the answer as JSON (`--json`). */
export const AuditAccess = Schema.Struct({ text: Schema.String, access: Schema.Unknown })

/**
 * `POST /v1/links`: a public link onto `service` of the key's workspace, with the options of `connect link create` as
 * typed there (checked by the hub, core/LinkRules.ts: a bad one is a 400 naming it): `expires` (`30d`), `methods`
 * (`["GET","HEAD"]`), `paths` (`["/api/v1"]`), `rateLimit` (`100/min`, per client address).
 */
export const LinkCreateRequest = Schema.Struct({
  service: Schema.String.pipe(Schema.maxLength(200)),
  expires: Schema.optionalWith(Schema.String.pipe(Schema.maxLength(40)), { exact: true }),
  methods: Schema.optionalWith(Schema.Array(Schema.String.pipe(Schema.maxLength(20))).pipe(Schema.maxItems(16)), { exact: true }),
  paths: Schema.optionalWith(Schema.Array(Schema.String.pipe(Schema.maxLength(300))).pipe(Schema.maxItems(64)), { exact: true }),
  rateLimit: Schema.optionalWith(Schema.String.pipe(Schema.maxLength(40)), { exact: true })
}).annotations({ parseOptions: { onExcessProperty: "error" } })

/** One public link as listed: never its token. `status` is `active`, `expired` or `revoked`. */
export const LinkInfo = Schema.Struct({
  linkId: Schema.String,
  service: Schema.String,
  status: Schema.Literal("active", "expired", "revoked"),
  expiresAt: Timestamp,
  methods: Schema.Array(Schema.String),
  paths: Schema.Array(Schema.String),
  rateLimitPerMinute: Schema.Number,
  createdAt: Timestamp,
  revokedAt: Schema.NullOr(Timestamp)
})

/** A created link: its URLs and token, shown this once (the hub keeps only the token's SHA-256). */
export const LinkCreatedInfo = Schema.Struct({
  ...LinkInfo.fields,
  token: Schema.String,
  url: Schema.String,
  /** `https://TOKEN.<link domain>/` when the hub runs with `--link-domain`, else null. */
  domainUrl: Schema.NullOr(Schema.String)
})

// ---------------------------------------------------------------------------------------------------------------------
// Groups

/** Agents: provisioned with an API key, rotating their own token, listed for an API key. */
export class Agents extends HttpApiGroup.make("agents")
  .add(
    HttpApiEndpoint.post("provision", "/v1/agents")
      .setPayload(ProvisionRequest)
      .addSuccess(Provisioned, { status: 201 })
      .middleware(ApiKeyAuth)
  )
  .add(HttpApiEndpoint.post("rotate", "/v1/agents/rotate").addSuccess(Rotated).middleware(AgentTokenAuth))
  .add(
    HttpApiEndpoint.get("list", "/v1/agents")
      .addSuccess(Schema.Struct({ agents: Schema.Array(AgentInfo) }))
      .middleware(ApiKeyAuth)
  )
  // The refusals of the agent decider (core/DomainError.ts), by reason.
  .addError(Errors.Invalid)
  .addError(Errors.Revoked)
  .addError(Errors.NotFound)
  .addError(Errors.AlreadyExists)
  .addError(Errors.Conflict)
{}

/** Services: what the workspace exposes, for its API keys and its agents. */
export class Services extends HttpApiGroup.make("services").add(
  HttpApiEndpoint.get("list", "/v1/services")
    .addSuccess(Schema.Struct({ services: Schema.Array(ServiceInfo) }))
    .middleware(WorkspaceAuth)
) {}

/**
 * Audit: reading the log with an API key — its events, or its statistics from the hourly rollups — a workspace key its
 * own workspace's (row-level security), an operator key every one. Each answered query is itself recorded
 * (`AuditRead`; a tail once, when it opens). Addresses reach an operator key in full and a workspace key masked
 * (core/Mask.ts). A hub started without audit's routes answers 404.
 */
export class Audit extends HttpApiGroup.make("audit")
  .add(
    HttpApiEndpoint.get("events", "/v1/audit/events")
      .setUrlParams(AuditEventsQuery)
      .addSuccess(AuditEventsPage)
      .middleware(ApiKeyAuth)
  )
  .add(
    HttpApiEndpoint.get("tail", "/v1/audit/tail")
      .setUrlParams(AuditTailQuery)
      .addSuccess(AuditTailPage)
      .addError(Errors.TooManyRequests)
      .middleware(ApiKeyAuth)
  )
  .add(HttpApiEndpoint.get("integrity", "/v1/audit/integrity").addSuccess(AuditIntegrity).middleware(ApiKeyAuth))
  .add(
    HttpApiEndpoint.get("stats", "/v1/audit/stats")
      .setUrlParams(AuditStatsQuery)
      .addSuccess(AuditStats)
      .middleware(ApiKeyAuth)
  )
  .add(
    HttpApiEndpoint.get("access", "/v1/audit/access")
      .setUrlParams(AuditAccessQuery)
      .addSuccess(AuditAccess)
      .middleware(ApiKeyAuth)
  )
  // A workspace key naming another workspace (403); a hub without audit's routes (404).
  .addError(Errors.Forbidden)
  .addError(Errors.NotFound)
{}

/** Links: public HTTP links onto the workspace's services, created, listed and revoked with an API key. */
export class Links extends HttpApiGroup.make("links")
  .add(
    HttpApiEndpoint.post("create", "/v1/links")
      .setPayload(LinkCreateRequest)
      .addSuccess(LinkCreatedInfo, { status: 201 })
      .middleware(ApiKeyAuth)
  )
  .add(
    HttpApiEndpoint.get("list", "/v1/links")
      .addSuccess(Schema.Struct({ links: Schema.Array(LinkInfo) }))
      .middleware(ApiKeyAuth)
  )
  .add(
    HttpApiEndpoint.post("revoke", "/v1/links/:linkId/revoke")
      .setPath(Schema.Struct({ linkId: Schema.String }))
      .addSuccess(Schema.Struct({ linkId: Schema.String, revokedAt: Timestamp }))
      .middleware(ApiKeyAuth)
  )
  .addError(Errors.Invalid)
  .addError(Errors.NotFound)
{}

/**
 * `POST /v1/shares`: a share of `services` (names of the key's workspace's exposed services) with the options of
 * `connect share create` as typed there (checked by the hub: a bad one is a 400 naming it): `expires` (`7d`, default
 * 7 days), `name` (`acme-contractor`), `rateLimit` (`60/min`, opens through the share).
 */
export const ShareCreateRequest = Schema.Struct({
  services: Schema.Array(Schema.String.pipe(Schema.maxLength(200))).pipe(Schema.minItems(1), Schema.maxItems(64)),
  expires: Schema.optionalWith(Schema.String.pipe(Schema.maxLength(40)), { exact: true }),
  name: Schema.optionalWith(Label, { exact: true }),
  rateLimit: Schema.optionalWith(Schema.String.pipe(Schema.maxLength(40)), { exact: true })
}).annotations({ parseOptions: { onExcessProperty: "error" } })

/** One share as listed: never its code, only its prefix. `status` is `active`, `expired` or `revoked`. */
export const ShareInfo = Schema.Struct({
  shareId: Schema.String,
  name: Schema.NullOr(Schema.String),
  codePrefix: Schema.NullOr(Schema.String),
  services: Schema.Array(Schema.String),
  expiresAt: Timestamp,
  rateLimit: Schema.NullOr(Schema.String),
  createdAt: Timestamp,
  revokedAt: Schema.NullOr(Timestamp),
  status: Schema.Literal("active", "expired", "revoked"),
  /** Agents that joined it. */
  joined: Schema.Number
})

/** `POST /v1/shares/join`: the code an agent was given (at most 200 characters; a share code is 35). */
export const ShareJoinRequest = Schema.Struct({ code: Schema.String.pipe(Schema.maxLength(200)) })
  .annotations({ parseOptions: { onExcessProperty: "error" } })

/** Shares: created, listed and revoked by the owner's API key; joined by an agent of another workspace. */
export class Shares extends HttpApiGroup.make("shares")
  .add(
    HttpApiEndpoint.post("create", "/v1/shares")
      .setPayload(ShareCreateRequest)
      .addSuccess(Schema.Struct({ code: Schema.String, share: ShareInfo }), { status: 201 })
      .middleware(ApiKeyAuth)
  )
  .add(
    HttpApiEndpoint.get("list", "/v1/shares")
      .addSuccess(Schema.Struct({ shares: Schema.Array(ShareInfo) }))
      .middleware(ApiKeyAuth)
  )
  .add(
    HttpApiEndpoint.post("revoke", "/v1/shares/:shareId/revoke")
      .setPath(Schema.Struct({ shareId: Schema.String }))
      .addSuccess(Schema.Struct({ shareId: Schema.String, revoked: Schema.Boolean }))
      .middleware(ApiKeyAuth)
  )
  .add(
    HttpApiEndpoint.post("join", "/v1/shares/join")
      .setPayload(ShareJoinRequest)
      .addSuccess(Schema.Struct({ share: ShareInfo, owner: Schema.String, joined: Schema.Boolean }))
      .middleware(AgentTokenAuth)
  )
  .addError(Errors.Invalid)
  .addError(Errors.NotFound)
  .addError(Errors.Revoked)
{}

/** `POST /v1/workspaces`: the new workspace's name (1–200 characters, as a label). */
export const WorkspaceCreateRequest = Schema.Struct({ name: Label })
  .annotations({ parseOptions: { onExcessProperty: "error" } })

/** What an API key may manage: its own workspace, or (`operator`) every workspace and the hub. */
export const ApiKeyScope = Schema.Literal("workspace", "operator")

/** A new API key; the key itself is shown this once (the hub keeps its prefix and SHA-256). */
export const IssuedApiKey = Schema.Struct({
  apiKeyId: Schema.String,
  workspaceId: Schema.String,
  prefix: Schema.String,
  key: Schema.String,
  scope: ApiKeyScope
})

/** A created workspace and its first (workspace-scoped) API key. */
export const WorkspaceCreated = Schema.Struct({ workspaceId: Schema.String, name: Schema.String, apiKey: IssuedApiKey })

/** `POST /v1/workspaces/:workspaceId/apikeys`: the key's name (default "admin") and scope (default workspace). */
export const ApiKeyCreateRequest = Schema.Struct({
  name: Schema.optionalWith(Label, { exact: true }),
  scope: Schema.optionalWith(ApiKeyScope, { exact: true })
}).annotations({ parseOptions: { onExcessProperty: "error" } })

/** An API key as listed: never the key or its hash. */
export const ApiKeyInfo = Schema.Struct({
  apiKeyId: Schema.String,
  name: Schema.String,
  prefix: Schema.String,
  scope: ApiKeyScope,
  createdAt: Timestamp,
  revokedAt: Schema.NullOr(Timestamp)
})

/** `POST /v1/agents/:agentId/revoke`: why, for the audit log (at most 200 characters). */
export const AgentRevokeRequest = Schema.Struct({ reason: Schema.optionalWith(Label, { exact: true }) })
  .annotations({ parseOptions: { onExcessProperty: "error" } })

const WorkspacePath = Schema.Struct({ workspaceId: Schema.String.pipe(Schema.maxLength(100)) })

/**
 * Administration with an API key, recorded with the same events as `connect hub workspace|apikey|agent` on the hub's
 * host: an operator key creates workspaces and manages every workspace, a workspace key its own keys and agents only
 * (anything else is a 403, recorded as a refused key with reason `wrong_scope`). Revocations take effect at once: a
 * revoked key's next request is refused, a revoked agent's connection is closed.
 */
export class Admin extends HttpApiGroup.make("admin")
  .add(
    HttpApiEndpoint.post("createWorkspace", "/v1/workspaces")
      .setPayload(WorkspaceCreateRequest)
      .addSuccess(WorkspaceCreated, { status: 201 })
      .middleware(ApiKeyAuth)
  )
  .add(
    HttpApiEndpoint.post("createApiKey", "/v1/workspaces/:workspaceId/apikeys")
      .setPath(WorkspacePath)
      .setPayload(ApiKeyCreateRequest)
      .addSuccess(IssuedApiKey, { status: 201 })
      .middleware(ApiKeyAuth)
  )
  .add(
    HttpApiEndpoint.get("listApiKeys", "/v1/workspaces/:workspaceId/apikeys")
      .setPath(WorkspacePath)
      .addSuccess(Schema.Struct({ apiKeys: Schema.Array(ApiKeyInfo) }))
      .middleware(ApiKeyAuth)
  )
  .add(
    HttpApiEndpoint.post("revokeApiKey", "/v1/apikeys/:apiKeyId/revoke")
      .setPath(Schema.Struct({ apiKeyId: Schema.String.pipe(Schema.maxLength(100)) }))
      .addSuccess(Schema.Struct({ apiKeyId: Schema.String, revoked: Schema.Boolean }))
      .middleware(ApiKeyAuth)
  )
  .add(
    HttpApiEndpoint.get("listAgents", "/v1/workspaces/:workspaceId/agents")
      .setPath(WorkspacePath)
      .addSuccess(Schema.Struct({ agents: Schema.Array(AgentInfo) }))
      .middleware(ApiKeyAuth)
  )
  .add(
    HttpApiEndpoint.get("listServices", "/v1/workspaces/:workspaceId/services")
      .setPath(WorkspacePath)
      .addSuccess(Schema.Struct({ services: Schema.Array(ServiceInfo) }))
      .middleware(ApiKeyAuth)
  )
  .add(
    HttpApiEndpoint.post("revokeAgent", "/v1/agents/:agentId/revoke")
      .setPath(Schema.Struct({ agentId: Schema.String.pipe(Schema.maxLength(100)) }))
      .setPayload(AgentRevokeRequest)
      .addSuccess(Schema.Struct({ agentId: Schema.String, revoked: Schema.Boolean, released: Schema.Array(Schema.String) }))
      .middleware(ApiKeyAuth)
  )
  .addError(Errors.Invalid)
  .addError(Errors.Forbidden)
  .addError(Errors.NotFound)
  .addError(Errors.Conflict)
{}

/** The hub's API. Any endpoint may answer a malformed request (400, 413) and an unavailable event log (503). */
export class HubApi extends HttpApi.make("connect-hub")
  .add(Agents)
  .add(Services)
  .add(Audit)
  .add(Links)
  .add(Shares)
  .add(Admin)
  .addError(Errors.BadRequest)
  .addError(Errors.BodyTooLarge)
  .addError(Errors.Unavailable)
{}
