/**
 * The `ecs` export format: one Elastic Common Schema 8.x document per line. The categorization fields use only ECS's
 * allowed values (event.category and its expected event.type values, see the table below); the chain travels in
 * `event.id`, `event.sequence` and `event.hash`, the whole envelope and the stored payload under `connect.*`.
 * Address fields are only set to valid IP addresses, since Elasticsearch rejects a whole document over one bad `ip`.
 */
import type { StoredEvent } from "../../core/EventLog.ts"
import type { Event, EventType } from "../../core/Events.ts"
import type { FormatContext } from "./FormatContext.ts"
import { storedJson, stringify } from "./Json.ts"
import { logRecord, type Principal, type Severity, summarize } from "./Summary.ts"

/** The ECS version the documents follow. */
export const EcsVersion = "8.17.0"

type Category = "api" | "authentication" | "configuration" | "iam" | "network" | "session" | "web"
type Kind = "access" | "change" | "connection" | "creation" | "deletion" | "denied" | "end" | "error" | "info" |
  "start" | "user"

/**
 * event.category and event.type per event type. Authentication-like events are `authentication` (a connection
 * is also a `session`); changes to agents and API keys, the principals that log in, are `iam` + `user`; services,
 * shares, links and workspaces are settings of the hub, so `configuration`; tunnels are `network` connections; public
 * link requests are `web` `access` (`error` too when the upstream or the log failed). A revocation is a `change`: the
 * record stays, its credential is refused.
 */
const categorization: {
  readonly [T in EventType]: (event: Extract<Event, { readonly _tag: T }>) => readonly [Array<Category>, Array<Kind>]
} = {
  WorkspaceCreated: () => [["configuration"], ["creation"]],
  ApiKeyCreated: () => [["iam"], ["user", "creation"]],
  ApiKeyRevoked: () => [["iam"], ["user", "change"]],
  ApiKeyAuthFailed: () => [["authentication"], ["start"]],
  AgentProvisioned: () => [["iam"], ["user", "creation"]],
  AgentTokenRotated: () => [["iam"], ["user", "change"]],
  AgentTokenRevoked: () => [["iam"], ["user", "change"]],
  AgentAllowListSet: () => [["iam"], ["user", "change"]],
  AgentConnected: () => [["authentication", "session"], ["start"]],
  AgentDisconnected: () => [["authentication", "session"], ["end"]],
  AgentIpChanged: () => [["authentication"], ["info"]],
  AgentAuthFailed: () => [["authentication"], ["start"]],
  ServiceExposed: () => [["configuration"], ["creation"]],
  ServiceUnexposed: () => [["configuration"], ["deletion"]],
  ServiceReleased: () => [["configuration"], ["deletion"]],
  TunnelOpened: () => [["network"], ["connection", "start"]],
  TunnelClosed: () => [["network"], ["connection", "end"]],
  ReachDenied: () => [["network"], ["connection", "denied"]],
  ShareCreated: () => [["configuration"], ["creation"]],
  ShareRevoked: () => [["configuration"], ["change"]],
  ShareAccessed: () => [["authentication"], ["start"]],
  ShareJoined: () => [["iam"], ["access"]],
  CheckpointSigned: () => [["configuration"], ["info"]],
  SigningKeyRotated: () => [["configuration"], ["change"]],
  AuditRead: () => [["api"], ["access"]],
  ConsoleSignedIn: () => [["authentication", "session"], ["start"]],
  ConsoleSignedOut: () => [["authentication", "session"], ["end"]],
  ConsoleSignInFailed: () => [["authentication"], ["start"]],
  LinkCreated: () => [["configuration"], ["creation"]],
  LinkRevoked: () => [["configuration"], ["change"]],
  LinkAccessed: (e) =>
    [["web"], e.reason === "upstream_error" || e.reason === "agent_offline" || e.reason === "log_unavailable"
      ? ["access", "error"]
      : ["access"]]
}

/** event.severity: the same 0–3 scale as OCSF's severity_id, so both exports rank alike. */
export const severityNumber: Record<Severity, number> = { unknown: 0, informational: 1, low: 2, medium: 3 }

// ECS wants nanoseconds; beyond 2^53 ns (~104 days) the number would not be exact, so it is left out (the payload keeps
// the milliseconds).
const nanoseconds = (ms: number | undefined): number | undefined =>
  ms !== undefined && Number.isSafeInteger(ms * 1_000_000) ? ms * 1_000_000 : undefined

const userOf = (p: Principal | undefined) =>
  p === undefined || (p.id === undefined && p.name === undefined) ? undefined : { id: p.id, name: p.name }

/** One stored event as one ECS document, without its line terminator; an unknown type gets no category, only its action. */
export const format = (stored: StoredEvent, context: FormatContext): string => {
  const s = summarize(stored)
  const event = stored.event
  const [category, type] = event._tag === "UnknownEvent"
    ? [undefined, undefined]
    : (categorization[event._tag] as (e: Event) => readonly [Array<Category>, Array<Kind>])(event)
  const actor = stored.meta.actor
  const authentication = category?.includes("authentication") === true
  // In authentication events `user` is who logged in; elsewhere it is who acted, and `user.target` whom it concerned.
  const user = authentication ? userOf(s.subject) : { id: actor.id, roles: [actor.kind], target: userOf(s.subject) }
  const http = event._tag === "LinkAccessed"
    ? { request: { method: event.method }, response: { status_code: event.status } }
    : undefined
  const relatedUsers = [...new Set([actor.id, s.subject?.id].filter((u) => u !== undefined))]
  const traffic = event._tag === "TunnelClosed"
    ? { source: event.bytesUp, destination: event.bytesDown, total: event.bytesUp + event.bytesDown }
    : undefined
  return stringify({
    "@timestamp": stored.recordedAt,
    ecs: { version: EcsVersion },
    event: {
      id: stored.id,
      sequence: stored.position,
      hash: s.hash,
      kind: "event",
      category,
      type,
      action: stored.type,
      outcome: s.outcome,
      severity: severityNumber[s.severity],
      reason: s.reason,
      duration: nanoseconds(s.durationMs),
      start: s.firstAt,
      end: s.lastAt,
      provider: "connect",
      module: "connect",
      dataset: "connect.audit"
    },
    message: s.message,
    source: s.sourceIp === undefined && traffic === undefined ? undefined : { ip: s.sourceIp, bytes: traffic?.source },
    destination: traffic === undefined ? undefined : { bytes: traffic.destination },
    network: traffic === undefined ? undefined : { transport: "tcp", bytes: traffic.total },
    user,
    user_agent: s.userAgent === undefined ? undefined : { original: s.userAgent },
    http,
    url: event._tag === "LinkAccessed" ? { path: event.path } : undefined,
    related: s.relatedIps.length === 0 && relatedUsers.length === 0 ? undefined : {
      ip: s.relatedIps.length > 0 ? s.relatedIps : undefined,
      user: relatedUsers.length > 0 ? relatedUsers : undefined
    },
    observer: { vendor: "connect", product: "connect", version: context.productVersion },
    connect: {
      ...logRecord(stored, s),
      actor: { kind: actor.kind, id: actor.id },
      hub_id: stored.meta.hubId,
      correlation_id: stored.meta.correlationId,
      data: storedJson(stored.dataJson),
      meta: storedJson(stored.metaJson)
    }
  })
}
