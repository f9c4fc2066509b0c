/**
 * The handlers of the API's `audit` group (declared in core/HubApi.ts), served by the hub, which gets this layer from
 * bin/connect.ts. `GET /v1/audit/events` takes the filters of `connect audit` (checked by the same rules, a bad one a
 * 400 naming it), reads under the caller's scope — a workspace key through the log's row-level security, so no filter
 * can show it another workspace's events or a hub-level one (naming another workspace is refused, 403, and recorded as
 * a refused key); an operator key everything — and records the reading as one `AuditRead` before answering
 * (audit/ApiRead.ts; a read that cannot be recorded is not answered: 503). Addresses reach a workspace key masked
 * (audit/Reveal.ts). `GET /v1/audit/stats` is audit/StatsApi.ts, `…/access` AccessApi.ts, `…/tail` TailApi.ts.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { Effect, Either } from "effect"
import * as HubApi from "../core/HubApi.ts"
import * as AccessApi from "./AccessApi.ts"
import * as ApiRead from "./ApiRead.ts"
import * as CallerFilters from "./CallerFilters.ts"
import type { RawEvent } from "../core/EventLog.ts"
import * as PgIntegrity from "./PgIntegrity.ts"
import * as PgQuery from "./PgQuery.ts"
import * as PgReadWindows from "./PgReadWindows.ts"
import type { RawFilters } from "./Query.ts"
import { eventOf } from "./QueryCli.ts"
import * as Reveal from "./Reveal.ts"
import * as StatsApi from "./StatsApi.ts"
import * as TailApi from "./TailApi.ts"
import * as Tails from "./Tails.ts"

/** `limit` when the request gives none. */
export const DEFAULT_PAGE = 50

type Query = typeof HubApi.AuditEventsQuery.Type

const FILTERS = ["since", "until", "type", "workspace", "agent", "service", "outcome", "ip"] as const

const badRequest = (message: string) => new HubApi.BadRequest({ message })

/** `limit` and `before` checked: whole numbers, `limit` 1–1000, `before` a position (≥ 1). */
const paging = (query: Query): Either.Either<{ limit: number; before: number | undefined }, HubApi.BadRequest> => {
  const limit = query.limit ?? DEFAULT_PAGE
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > HubApi.AUDIT_PAGE_LIMIT) {
    return Either.left(badRequest(`limit must be a whole number from 1 to ${HubApi.AUDIT_PAGE_LIMIT}`))
  }
  const before = query.before
  if (before !== undefined && (!Number.isSafeInteger(before) || before < 1)) {
    return Either.left(badRequest("before must be a position: a whole number from 1"))
  }
  return Either.right({ limit, before })
}

/**
 * The filters as the request gave them, for the `AuditRead` (checked already: bounded, no control character, no lone
 * surrogate), `limit` and `before` included.
 */
const given = (query: Query): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const key of [...FILTERS, "limit", "before"] as const) if (query[key] !== undefined) out[key] = String(query[key])
  return out
}

/** `GET /v1/audit/events`. */
export const events = (query: Query) =>
  Effect.gen(function*() {
    const caller = yield* HubApi.ApiKeyCaller
    const { before, limit } = yield* paging(query)
    const raw: RawFilters = { ...Object.fromEntries(FILTERS.map((k) => [k, query[k]])), limit }
    const filters = yield* CallerFilters.checked(caller, raw)
    const read = Effect.flatMap(PgQuery.resolve(filters), (resolved) => PgQuery.query(filters, resolved, before))
    const rows = caller.scope === "operator" ? yield* read : yield* PgQuery.inWorkspace(caller.workspaceId, read)
    yield* ApiRead.record(caller, "query", given(query), rows.length)
    return {
      events: rows.map((row) => Reveal.shown(caller, eventOf(row))),
      next: rows.length === limit ? rows[rows.length - 1]!.position : null
    }
  }).pipe(
    Effect.catchTags({
      SqlError: ApiRead.unavailable,
      EventLogError: ApiRead.unavailable,
      VersionConflict: ApiRead.unavailable
    })
  )

/** `GET /v1/audit/integrity`: the latest verify run and signed checkpoint the key may read (hub-level: an operator's). */
export const integrity = Effect.gen(function*() {
  const caller = yield* HubApi.ApiKeyCaller
  const read = caller.scope === "operator" ? yield* PgIntegrity.latest : yield* PgQuery.inWorkspace(caller.workspaceId, PgIntegrity.latest)
  const shown = (e: RawEvent | undefined) => (e === undefined ? null : Reveal.shown(caller, eventOf(e)))
  yield* ApiRead.record(caller, "query", { read: "integrity" }, [read.verify, read.checkpoint].filter((e) => e !== undefined).length)
  return { verify: shown(read.verify), checkpoint: shown(read.checkpoint) }
}).pipe(
  Effect.catchTags({
    SqlError: ApiRead.unavailable,
    EventLogError: ApiRead.unavailable,
    VersionConflict: ApiRead.unavailable
  })
)

/** The `audit` group's handlers, on the hub's database and log; the live tails live as long as the hub's routes. */
export const layer = HttpApiBuilder.group(HubApi.HubApi, "audit", (handlers) =>
  // While the hub serves the audit API it also closes the ended windows of offline reads (audit/PgReadWindows.ts).
  Effect.map(Effect.zipLeft(Tails.make(), PgReadWindows.closer()), (tails) =>
    handlers
      .handle("events", ({ urlParams }) => events(urlParams))
      .handle("tail", ({ urlParams }) => TailApi.tail(tails)(urlParams))
      .handle("integrity", () => integrity)
      .handle("stats", ({ urlParams }) => StatsApi.stats(urlParams))
      .handle("access", ({ urlParams }) => AccessApi.access(urlParams))))

