/**
 * `GET /v1/audit/access` (declared in core/HubApi.ts, served in the `audit` group by audit/AuditApi.ts): the question
 * of `connect audit access`, checked by the same rules (a bad value a 400 naming it), answered by the same fold of the
 * log (audit/PgAccess.ts) under the caller's scope — a workspace key through the log's row-level security, so a
 * service of another workspace is not found; naming another workspace is refused (403) and recorded as a refused key
 * is; an operator key every workspace. The agents' addresses are masked unless an operator key asks `reveal=true`
 * (audit/Reveal.ts). Each answer is recorded as one `AuditRead` of kind `access` before it is sent.
 */
import { Effect, Either } from "effect"
import * as HubApi from "../core/HubApi.ts"
import { formatReport, masked } from "./AccessCli.ts"
import { parseQuery } from "./Access.ts"
import * as ApiRead from "./ApiRead.ts"
import * as PgAccess from "./PgAccess.ts"
import * as PgQuery from "./PgQuery.ts"
import * as Reveal from "./Reveal.ts"

type Query = typeof HubApi.AuditAccessQuery.Type

/** `GET /v1/audit/access`. */
export const access = (query: Query) =>
  Effect.gen(function*() {
    const caller = yield* HubApi.ApiKeyCaller
    const parsed = parseQuery({ service: query.service, at: query.at, workspace: query.workspace }, new Date())
    if (Either.isLeft(parsed)) {
      return yield* new HubApi.BadRequest({ message: parsed.left.message.replace(/--(at|service|workspace)\b/g, "$1") })
    }
    const question = parsed.right
    if (caller.scope === "workspace" && question.workspace !== undefined && question.workspace !== caller.workspaceId) {
      return yield* caller.outOfScope(`this API key reads its own workspace (${caller.workspaceId}) only`)
    }
    const read = PgAccess.read(question)
    const answer = caller.scope === "operator" ? yield* read : yield* PgQuery.inWorkspace(caller.workspaceId, read)
    // A workspace key is answered masked whatever it asks (audit/Reveal.ts).
    const shown = masked(answer, query.reveal === "true" && Reveal.mayReveal(caller))
    const given: Record<string, string> = { service: query.service, at: query.at }
    if (query.workspace !== undefined) given.workspace = query.workspace
    if (query.reveal !== undefined) given.reveal = query.reveal
    yield* ApiRead.record(caller, "access", given, shown.asOf.position)
    return { text: formatReport(shown), access: JSON.parse(JSON.stringify(shown)) as unknown }
  }).pipe(
    Effect.catchTags({
      AccessError: (e) => new HubApi.NotFound({ message: e.message }),
      SqlError: ApiRead.unavailable,
      EventLogError: ApiRead.unavailable,
      VersionConflict: ApiRead.unavailable
    }),
    Effect.withSpan("AuditApi.access")
  )
