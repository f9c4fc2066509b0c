/**
 * What every answered request of the audit API leaves on the log — one `AuditRead` with its parameters as given, in
 * the workspace key's workspace (an operator key's, about every workspace, hub-level) — and how a request whose read
 * or record failed is answered (503: the hub fails closed without its event log).
 */
import { Effect } from "effect"
import { EventLog } from "../core/EventLog.ts"
import { AuditRead, EventMeta } from "../core/Events.ts"
import * as HubApi from "../core/HubApi.ts"
import { ApiKeyId } from "../core/Ids.ts"

/** The stream of the reads made with one API key. */
export const readStream = (apiKeyId: string): string => `auditread-${apiKeyId}`

/**
 * Appends the `AuditRead` of one answered request by `caller`: `parameters` as the request gave them (checked already:
 * bounded, no control character), `count` the events it returned or summarised.
 */
export const record = (
  caller: HubApi.ApiKeyCaller["Type"],
  kind: AuditRead["kind"],
  parameters: Record<string, string>,
  count: number
) =>
  Effect.flatMap(EventLog, (log) =>
    log.append(
      readStream(caller.apiKeyId),
      [new AuditRead({ kind, apiKeyId: ApiKeyId.make(caller.apiKeyId), filters: parameters, count })],
      {
        expectedVersion: "any",
        // An operator's read is about every workspace (its parameters name their ids, labels, addresses): hub-level,
        // so that the workspace keys of the operator key's own workspace do not read it.
        workspaceId: caller.scope === "operator" ? null : caller.workspaceId,
        meta: new EventMeta({
          actor: { kind: "apikey", id: caller.apiKeyId },
          sourceIp: caller.from.ip,
          ...(caller.from.userAgent === undefined ? {} : { userAgent: caller.from.userAgent })
        })
      }
    ))

/** A failure of the database or the log: logged, answered 503 (the hub fails closed without its event log). */
export const unavailable = (error: unknown) =>
  Effect.zipRight(
    Effect.logError("audit API: request failed", error),
    new HubApi.Unavailable({ message: "the hub cannot reach its event log; try again" })
  )

