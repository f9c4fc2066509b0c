/**
 * `GET /v1/audit/tail` (declared in core/HubApi.ts, served in the `audit` group by audit/AuditApi.ts): a live tail of
 * the log as a long poll. The first request opens a tail with the filters of `GET /v1/audit/events` (checked by the
 * same rules; a workspace naming another is refused, 403, and recorded as a refused key is) and is recorded as one
 * `AuditRead` of kind `tail` — not one per request, which would feed the tail its own reads every second. Each request
 * answers the events after `after` that pass the tail's filters, oldest first, read under the caller's scope (a
 * workspace key through the log's row-level security, with its addresses masked: audit/Reveal.ts), as soon as one
 * commits or after `wait` seconds with none. Tails are bounded per key, per workspace and in all, with room kept for
 * operator keys (audit/Tails.ts): past a bound, 429, recorded as a refused key is.
 */
import { Effect } from "effect"
import * as HubApi from "../core/HubApi.ts"
import * as ApiRead from "./ApiRead.ts"
import * as CallerFilters from "./CallerFilters.ts"
import * as PgQuery from "./PgQuery.ts"
import type { RawFilters } from "./Query.ts"
import { eventOf } from "./QueryCli.ts"
import * as Reveal from "./Reveal.ts"
import type { Tail, Tails } from "./Tails.ts"

type Query = typeof HubApi.AuditTailQuery.Type

/** Events one answer carries when the request gives no `limit`. */
export const DEFAULT_LIMIT = 100

/**
 * Commits this close together are read as one: a burst of appends wakes a waiting request once per read, not once per
 * commit.
 */
const GATHER = "100 millis"

const FILTERS = ["type", "workspace", "agent", "service", "outcome", "ip"] as const

/** The 429's message for each bound a new tail would break. */
const FULL = {
  key_full: "this API key has too many live tails open; close one (a tail ends a minute after its last request)",
  workspace_full:
    "this workspace's API keys have too many live tails open together; close one (a tail ends a minute after its last request)",
  hub_full: "the hub holds too many live tails; try again later"
} as const

const badRequest = (message: string) => new HubApi.BadRequest({ message })

/** `after`, `limit` and `wait` checked. */
const bounds = (query: Query) =>
  Effect.gen(function*() {
    if (query.after === undefined ? query.tail !== undefined : !Number.isSafeInteger(query.after) || query.after < 0) {
      return yield* badRequest("after must be a position: a whole number from 0 (the last answer's position)")
    }
    const limit = query.limit ?? DEFAULT_LIMIT
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > HubApi.AUDIT_PAGE_LIMIT) {
      return yield* badRequest(`limit must be a whole number from 1 to ${HubApi.AUDIT_PAGE_LIMIT}`)
    }
    const wait = query.wait ?? HubApi.AUDIT_TAIL_WAIT
    if (!Number.isFinite(wait) || wait < 0 || wait > HubApi.AUDIT_TAIL_WAIT) {
      return yield* badRequest(`wait must be a number of seconds from 0 to ${HubApi.AUDIT_TAIL_WAIT}`)
    }
    return { after: query.after, limit, wait }
  })

/** Opens a tail with the request's filters and records it, or names the tail the request continues. */
const tailOf = (tails: Tails, query: Query, limit: number) =>
  Effect.gen(function*() {
    const caller = yield* HubApi.ApiKeyCaller
    const given = FILTERS.filter((k) => query[k] !== undefined)
    if (query.tail !== undefined) {
      if (given.length > 0) {
        return yield* badRequest(`a tail keeps the filters it was opened with (${given.join(", ")} given); open a new tail without tail= to change them`)
      }
      const found = yield* tails.take(query.tail.slice(0, 64), caller.apiKeyId)
      // Another key's tail is a refused read, on the record; an ended one (or a made-up id) is simply gone.
      if (found === "foreign") return yield* caller.outOfScope("that tail was opened with another API key")
      if (found === "unknown") {
        return yield* new HubApi.NotFound({
          message: "no such tail: it ended (a minute without a request); open a new one without tail="
        })
      }
      return found
    }
    const raw: RawFilters = { ...Object.fromEntries(FILTERS.map((k) => [k, query[k]])), limit }
    const filters = yield* CallerFilters.checked(caller, raw)
    const resolve = PgQuery.resolve(filters)
    const resolved = caller.scope === "operator" ? yield* resolve : yield* PgQuery.inWorkspace(caller.workspaceId, resolve)
    const opened = yield* tails.open(caller, filters, resolved)
    if (typeof opened === "string") return yield* caller.limited(FULL[opened])
    const parameters: Record<string, string> = {}
    for (const k of given) parameters[k] = String(query[k])
    // Where it starts reading is part of what the record says it read: `after=0` is the whole history.
    if (query.after !== undefined) parameters.after = String(query.after)
    // Recorded before anything is answered: a tail the log cannot take is not opened.
    yield* ApiRead.record(caller, "tail", parameters, 0).pipe(Effect.tapError(() => tails.close(opened)))
    return opened
  })

/** The events after `after` up to `upTo` that pass the tail's filters, under the caller's scope, oldest first. */
const read = (tail: Tail, after: number, upTo: number) =>
  Effect.gen(function*() {
    const caller = yield* HubApi.ApiKeyCaller
    const query = PgQuery.query(tail.filters, tail.resolved, upTo + 1, after)
    const rows = caller.scope === "operator" ? yield* query : yield* PgQuery.inWorkspace(caller.workspaceId, query)
    return rows.map((row) => Reveal.shown(caller, eventOf(row)))
  })

/** `GET /v1/audit/tail`, with the hub's tails. */
export const tail = (tails: Tails) => (query: Query) =>
  Effect.gen(function*() {
    const { after: from, limit, wait } = yield* bounds(query)
    const open = yield* tailOf(tails, query, limit)
    const deadline = Date.now() + wait * 1000
    // A tail opened without a position starts at the head: what commits from now on. It reads forward only.
    if (query.tail !== undefined && from !== undefined && from < open.position) {
      return yield* badRequest(
        `after ${from} goes back: this tail has answered up to position ${open.position}; open a new tail to read from earlier`
      )
    }
    let after = from ?? (query.tail !== undefined ? open.position : yield* tails.head)
    if (query.tail === undefined) open.position = after
    while (true) {
      const head = yield* tails.head
      if (head > after) {
        const events = yield* read(open, after, head)
        if (events.length > 0) {
          // A full answer may have more behind it: the next request goes on from its last event.
          const position = events.length === limit ? events[events.length - 1]!.position : head
          open.position = position
          return { tail: open.id, events, position }
        }
        // Complete up to the head: nothing there this key may see through these filters.
        after = head
      }
      if (!(yield* tails.waitPast(open, after, deadline))) {
        open.position = after
        return { tail: open.id, events: [], position: after }
      }
      yield* Effect.sleep(GATHER)
    }
  }).pipe(
    Effect.catchTags({
      SqlError: ApiRead.unavailable,
      EventLogError: ApiRead.unavailable,
      VersionConflict: ApiRead.unavailable
    }),
    Effect.withSpan("AuditApi.tail")
  )
