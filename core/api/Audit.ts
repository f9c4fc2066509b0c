/**
 * The audit group: events, tails, integrity, statistics and access, read with an API key.
 * Part of the hub API declared in core/HubApi.ts.
 */
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import { Schema } from "effect"
import { Errors } from "./Errors.ts"
import { ApiKeyAuth } from "./Auth.ts"
import { Timestamp } from "./Common.ts"

/** Most events one `GET /v1/audit/events` answers; a client pages further back with `before`. */
export const AUDIT_PAGE_LIMIT = 1000

/** The filters of `connect audit` a query of events and a tail both take (besides the time range, for events). */
const filterFields = {
  type: Schema.optional(Schema.String),
  workspace: Schema.optional(Schema.String),
  agent: Schema.optional(Schema.String),
  service: Schema.optional(Schema.String),
  outcome: Schema.optional(Schema.String),
  ip: Schema.optional(Schema.String)
}

/**
 * `GET /v1/audit/events`: the filters of `connect audit`, as typed there (checked by the hub: a bad one is a 400 naming
 * it), `limit` (1–1000, default 50) and `before` (a position: only events before it, for the next page).
 */
export const AuditEventsQuery = Schema.Struct({
  since: Schema.optional(Schema.String),
  until: Schema.optional(Schema.String),
  ...filterFields,
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
  ...filterFields,
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
