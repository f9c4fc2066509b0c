/**
 * `GET /v1/audit/stats` (declared in core/HubApi.ts, served in the `audit` group by audit/AuditApi.ts): the options of
 * `connect audit --stats`, checked by the same rules (a bad one a 400 naming it), answered from the hourly rollups as
 * they are — the hub follows the log into them; the answer says the position it reflects, nothing is caught up inside
 * a request — under the caller's scope: a workspace key as `connect_app` in its own workspace (row-level security), an
 * operator key every workspace or the one it names. Each answer is recorded as one `AuditRead` of kind `stats`.
 */
import { Effect } from "effect"
import * as HubApi from "../core/HubApi.ts"
import * as ApiRead from "./ApiRead.ts"
import * as PgStats from "./PgStats.ts"
import * as Reveal from "./Reveal.ts"
import { DEFAULT_LIMIT } from "./Query.ts"
import * as Stats from "./Stats.ts"

type Query = typeof HubApi.AuditStatsQuery.Type

const OPTIONS = ["since", "until", "workspace", "by", "limit", "reveal"] as const

/** The options as the request gave them, for the `AuditRead` (checked already: bounded, no control character). */
const given = (query: Query): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const key of OPTIONS) if (query[key] !== undefined) out[key] = String(query[key])
  return out
}

/** The CLI's message with each option named as the query parameter (`since: …`, not `--since: …`). */
const asParameters = (message: string): string => message.replace(/--(since|until|workspace|by|limit)\b/g, "$1")

/** `GET /v1/audit/stats`. */
export const stats = (query: Query) =>
  Effect.gen(function*() {
    const caller = yield* HubApi.ApiKeyCaller
    const options = yield* Effect.mapError(
      Stats.parseOptions({
        since: query.since,
        until: query.until,
        workspace: query.workspace,
        by: query.by,
        limit: query.limit ?? DEFAULT_LIMIT,
        // A workspace key is answered masked whatever it asks (audit/Reveal.ts).
        reveal: query.reveal === "true" && Reveal.mayReveal(caller)
      }, new Date()),
      (e) => new HubApi.BadRequest({ message: asParameters(e.message) })
    )
    // Row-level security would count nothing; the key is told, and the attempt recorded as a refused key is.
    if (caller.scope === "workspace" && options.workspace !== undefined && options.workspace !== caller.workspaceId) {
      return yield* caller.outOfScope(`this API key reads its own workspace (${caller.workspaceId}) only`)
    }
    const answer = caller.scope === "operator"
      ? yield* PgStats.query(options)
      : yield* PgStats.queryInWorkspace(caller.workspaceId, { ...options, workspace: caller.workspaceId })
    yield* ApiRead.record(caller, "stats", given(query), answer.events)
    return answer satisfies HubApi.AuditStats
  }).pipe(
    Effect.catchTags({
      SqlError: ApiRead.unavailable,
      EventLogError: ApiRead.unavailable,
      VersionConflict: ApiRead.unavailable
    }),
    Effect.withSpan("AuditApi.stats")
  )
