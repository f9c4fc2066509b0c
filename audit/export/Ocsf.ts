/**
 * The `ocsf` export format: one OCSF 1.3.0 event per line. Every catalog type maps to one class and activity (table
 * below; class and activity ids as the schema defines them, https://github.com/ocsf/ocsf-schema tag 1.3.0), with
 * `metadata.uid` = event id, `metadata.sequence` = position, `metadata.tenant_uid` = workspace, and the chain and the
 * stored payload in `unmapped.connect`. 1.3.0 because from 1.7.0 `metadata.uid` names the OCSF record rather than
 * the source event, and the record-integrity profile for hash chains is not released yet.
 *
 * | Event type        | Class (class_uid)                  | Activity (activity_id)          | Why                                        |
 * |-------------------|------------------------------------|---------------------------------|--------------------------------------------|
 * | AgentConnected    | Authentication (3002)              | Logon (1)                       | the agent's token was accepted             |
 * | AgentDisconnected | Authentication (3002)              | Logoff (2)                      | that session ended                         |
 * | AgentAuthFailed   | Authentication (3002)              | Logon (1), status Failure       | a token was refused                        |
 * | ApiKeyAuthFailed  | Authentication (3002)              | Logon (1), status Failure       | an API key was refused                     |
 * | AgentIpChanged    | Authentication (3002)              | Other (99) "IP Change"          | recorded with a logon from a new address   |
 * | ShareAccessed     | Authentication (3002)              | Logon (1), status by outcome    | a share code is a credential presented by  |
 * |                   |                                    |                                 | another workspace                          |
 * | AgentProvisioned  | Account Change (3001)              | Create (1)                      | an agent is a principal with its own token |
 * | AgentTokenRotated | Account Change (3001)              | Password Change (3)             | its credential was replaced                |
 * | AgentTokenRevoked | Account Change (3001)              | Disable (5)                     | refused from then on, kept on record       |
 * | AgentAllowListSet | Account Change (3001)              | Attach Policy (7), Detach       | a policy on what the agent may expose;     |
 * |                   |                                    | Policy (8) when cleared         | clearing it detaches it                    |
 * | ApiKeyCreated     | Account Change (3001)              | Create (1)                      | an API key is a principal of the HTTP API  |
 * | ApiKeyRevoked     | Account Change (3001)              | Disable (5)                     | as for agent tokens                        |
 * | WorkspaceCreated  | Entity Management (3004)           | Create (1), entity Organization | the tenant the hub manages                 |
 * | ServiceExposed    | Entity Management (3004)           | Create (1)                      | a named service now exists in a workspace  |
 * | ServiceUnexposed  | Entity Management (3004)           | Delete (4)                      | its name is gone                           |
 * | ServiceReleased   | Entity Management (3004)           | Delete (4)                      | its name was freed by an admin or a revoke |
 * | ShareCreated      | Entity Management (3004)           | Create (1)                      | a share is a managed grant                 |
 * | ShareRevoked      | Entity Management (3004)           | Disable (9)                     | refused from then on, kept on record       |
 * | LinkCreated       | Entity Management (3004)           | Create (1)                      | a public link is a managed grant           |
 * | LinkRevoked       | Entity Management (3004)           | Disable (9)                     | as for shares                              |
 * | TunnelOpened      | Tunnel Activity (4014)             | Open (1)                        | a relayed TCP tunnel to a service          |
 * | TunnelClosed      | Tunnel Activity (4014)             | Close (2)                       | with its traffic and duration              |
 * | ReachDenied       | Tunnel Activity (4014)             | Open (1), status Failure        | a refused attempt to open one              |
 * | LinkAccessed      | Web Resource Access Activity (6004)| Access Grant (1), Access Deny   | an HTTP request through a public link;     |
 * |                   |                                    | (2), Access Error (4)           | Error when the upstream or the log failed  |
 * | (unknown type)    | Base Event (0)                     | Other (99), activity_name = type| never guessed: exported raw in `unmapped`  |
 *
 * | CheckpointSigned  | Entity Management (3004)           | Update (3)                      | the checkpoint is an entity of the log     |
 * | SigningKeyRotated | Entity Management (3004)           | Create (1)                      | a new key; the old one still verifies      |
 * | AuditRead         | API Activity (6003)                | Read (2)                        | one per API query or export run            |
 * | ConsoleSignedIn   | Authentication (3002)              | Logon (1)                       | an API key exchanged for a console session |
 * | ConsoleSignedOut  | Authentication (3002)              | Logoff (2)                      | that session ended (signed out or expired) |
 * | ConsoleSignInFailed | Authentication (3002)            | Logon (1), status Failure       | a console sign-in was refused              |
 */
import type { StoredEvent } from "../../core/EventLog.ts"
import type { Actor, Event, EventType } from "../../core/Events.ts"
import type { FormatContext } from "./FormatContext.ts"
import { storedJson, stringify } from "./Json.ts"
import { logRecord, type Outcome, type Principal, type Severity, summarize, type Summary } from "./Summary.ts"

/** The OCSF schema version of the records. */
export const OcsfVersion = "1.3.0"

/** An OCSF event class: its uid, caption and category. */
export interface OcsfClass {
  readonly uid: number
  readonly name: string
  readonly categoryUid: number
  readonly categoryName: string
}

const iam = { categoryUid: 3, categoryName: "Identity & Access Management" }

/** The classes the export uses, as OCSF 1.3.0 numbers them (category_uid × 1000 + the class's uid in its category). */
export const Classes = {
  AccountChange: { uid: 3001, name: "Account Change", ...iam },
  Authentication: { uid: 3002, name: "Authentication", ...iam },
  EntityManagement: { uid: 3004, name: "Entity Management", ...iam },
  TunnelActivity: { uid: 4014, name: "Tunnel Activity", categoryUid: 4, categoryName: "Network Activity" },
  WebResourceAccessActivity: {
    uid: 6004,
    name: "Web Resource Access Activity",
    categoryUid: 6,
    categoryName: "Application Activity"
  },
  ApiActivity: { uid: 6003, name: "API Activity", categoryUid: 6, categoryName: "Application Activity" },
  BaseEvent: { uid: 0, name: "Base Event", categoryUid: 0, categoryName: "Uncategorized" }
} as const satisfies Record<string, OcsfClass>

/** A type's class, activity (id and caption) and the class-specific attributes. */
export interface Mapping {
  readonly class: OcsfClass
  readonly activityId: number
  readonly activityName: string
  readonly attributes: Record<string, unknown>
}

const severityIds: Record<Severity, readonly [number, string]> = {
  unknown: [0, "Unknown"],
  informational: [1, "Informational"],
  low: [2, "Low"],
  medium: [3, "Medium"]
}

const statusIds: Record<Outcome, readonly [number, string]> = {
  unknown: [0, "Unknown"],
  success: [1, "Success"],
  failure: [2, "Failure"]
}

// user.type_id: 2 Admin and 3 System are OCSF's own; the hub's other principals are Other (99) with their own type.
const actorTypes: Record<Actor["kind"], readonly [number, string]> = {
  admin: [2, "Admin"],
  system: [3, "System"],
  agent: [99, "Agent"],
  apikey: [99, "API Key"],
  public: [99, "Public"]
}

const principalTypes: Record<Principal["kind"], string> = { agent: "Agent", apikey: "API Key", workspace: "Workspace" }

const user = (p: Principal | undefined) =>
  p === undefined
    ? { type_id: 0, type: "Unknown" }
    : { type_id: 99, type: principalTypes[p.kind], uid: p.id, name: p.name, credential_uid: p.credential }

const mapping = (cls: OcsfClass, activityId: number, activityName: string, attributes: Record<string, unknown>) => ({
  class: cls,
  activityId,
  activityName,
  attributes
})

const { AccountChange, ApiActivity, Authentication, EntityManagement, TunnelActivity, WebResourceAccessActivity } = Classes

/** An Authentication event about `s.subject`, logging on to `service`. */
const authentication = (s: Summary, activityId: number, activityName: string, service: Record<string, unknown>) =>
  mapping(Authentication, activityId, activityName, {
    user: user(s.subject),
    service,
    is_remote: true,
    http_request: s.userAgent === undefined ? undefined : { user_agent: s.userAgent }
  })

const entity = (activityId: number, activityName: string, entity: Record<string, unknown>, comment?: string) =>
  mapping(EntityManagement, activityId, activityName, { entity, comment })

const accountChange = (s: Summary, activityId: number, activityName: string, policy?: Record<string, unknown>) =>
  mapping(AccountChange, activityId, activityName, { user: user(s.subject), policy })

const other = (type: string, uid: string) => ({ type_id: 99, type, uid })

const source = (uid: string | undefined, ip: string | undefined) =>
  uid === undefined && ip === undefined ? undefined : { uid, ip }

type Map = {
  readonly [T in EventType]: (event: Extract<Event, { readonly _tag: T }>, s: Summary, hubId: string | undefined) => Mapping
}

const map: Map = {
  AgentConnected: (_, s, hub) => authentication(s, 1, "Logon", { name: "connect relay", uid: hub }),
  AgentDisconnected: (_, s, hub) => authentication(s, 2, "Logoff", { name: "connect relay", uid: hub }),
  AgentAuthFailed: (_, s, hub) => authentication(s, 1, "Logon", { name: "connect relay", uid: hub }),
  ApiKeyAuthFailed: (_, s, hub) => authentication(s, 1, "Logon", { name: "connect API", uid: hub }),
  ConsoleSignedIn: (_, s, hub) => authentication(s, 1, "Logon", { name: "connect console", uid: hub }),
  ConsoleSignedOut: (_, s, hub) => authentication(s, 2, "Logoff", { name: "connect console", uid: hub }),
  ConsoleSignInFailed: (_, s, hub) => authentication(s, 1, "Logon", { name: "connect console", uid: hub }),
  AgentIpChanged: (_, s, hub) => authentication(s, 99, "IP Change", { name: "connect relay", uid: hub }),
  ShareAccessed: (e, s) => authentication(s, 1, "Logon", { name: "connect share", uid: e.shareId }),
  ShareJoined: (e, s) => authentication(s, 1, "Logon", { name: "connect share", uid: e.shareId }),
  AgentProvisioned: (_, s) => accountChange(s, 1, "Create"),
  AgentTokenRotated: (_, s) => accountChange(s, 3, "Password Change"),
  AgentTokenRevoked: (_, s) => accountChange(s, 5, "Disable"),
  AgentAllowListSet: (e, s) =>
    e.allow === undefined
      ? accountChange(s, 8, "Detach Policy", { name: "expose allow-list" })
      : accountChange(s, 7, "Attach Policy", { name: "expose allow-list", desc: e.allow.join(", ") }),
  ApiKeyCreated: (_, s) => accountChange(s, 1, "Create"),
  ApiKeyRevoked: (_, s) => accountChange(s, 5, "Disable"),
  WorkspaceCreated: (e) =>
    entity(1, "Create", { type_id: 4, type: "Organization", uid: e.workspaceId, name: e.name, org: { uid: e.workspaceId, name: e.name } }),
  ServiceExposed: (e) => entity(1, "Create", { ...other("Service", e.serviceId), name: e.name }),
  ServiceUnexposed: (e) => entity(4, "Delete", { ...other("Service", e.serviceId), name: e.name }),
  ServiceReleased: (e) => entity(4, "Delete", { ...other("Service", e.serviceId), name: e.name }, e.reason),
  ShareCreated: (e) => entity(1, "Create", other("Share", e.shareId)),
  ShareRevoked: (e) => entity(9, "Disable", other("Share", e.shareId)),
  LinkCreated: (e) => entity(1, "Create", other("Link", e.linkId)),
  CheckpointSigned: (e) =>
    entity(3, "Update", { ...other("Checkpoint", String(e.position)), name: e.origin, data: { head_hash: e.headHash, key_id: e.keyId } }),
  SigningKeyRotated: (e) =>
    entity(1, "Create", { ...other("Signing Key", e.keyId), name: e.origin }, e.previousKeyId === undefined ? undefined : `replaces ${e.previousKeyId}`),
  AuditRead: (e, s) =>
    mapping(ApiActivity, 2, "Read", {
      actor: { user: user(s.subject) },
      api: { operation: `audit ${e.kind}` },
      src_endpoint: s.sourceIp === undefined ? undefined : { ip: s.sourceIp },
      resources: [{ type: "event log", data: e.filters }],
      count: e.count
    }),
  LinkRevoked: (e) => entity(9, "Disable", other("Link", e.linkId)),
  TunnelOpened: (e, s) =>
    mapping(TunnelActivity, 1, "Open", {
      session: { uid: e.tunnelId },
      src_endpoint: source(e.fromAgentId, s.sourceIp),
      dst_endpoint: { uid: e.serviceId, svc_name: e.serviceName }
    }),
  TunnelClosed: (e) =>
    mapping(TunnelActivity, 2, "Close", {
      session: { uid: e.tunnelId },
      dst_endpoint: { uid: e.serviceId },
      // bytes_out flows from the source (the reaching side) to the destination (the service), as OCSF defines it.
      traffic: { bytes_out: e.bytesUp, bytes_in: e.bytesDown, bytes: e.bytesUp + e.bytesDown }
    }),
  ReachDenied: (e, s) =>
    mapping(TunnelActivity, 1, "Open", {
      src_endpoint: source(e.fromAgentId, s.sourceIp),
      dst_endpoint: { svc_name: e.requestedName }
    }),
  LinkAccessed: (e, s) => {
    const error = e.reason === "upstream_error" || e.reason === "agent_offline" || e.reason === "log_unavailable"
    const [id, name] = e.outcome === "allowed" ? [1, "Access Grant"] : error ? [4, "Access Error"] : [2, "Access Deny"]
    return mapping(WebResourceAccessActivity, id, name, {
      http_request: { http_method: e.method, url: { path: e.path }, user_agent: s.userAgent },
      http_response: { code: e.status },
      // A token that matched no link names no resource.
      web_resources: e.linkId === undefined ? [] : [other("Link", e.linkId)]
    })
  }
}

/** The class and activity of a stored event: the table above, or Base Event / Other for a type this build does not know. */
export const classify = (stored: StoredEvent, s: Summary = summarize(stored)): Mapping => {
  const event = stored.event
  if (event._tag === "UnknownEvent") return mapping(Classes.BaseEvent, 99, stored.type, {})
  return (map[event._tag] as (e: Event, s: Summary, hub: string | undefined) => Mapping)(event, s, stored.meta.hubId)
}

/** One stored event as one OCSF event, without its line terminator. */
export const format = (stored: StoredEvent, context: FormatContext): string => {
  const s = summarize(stored)
  const m = classify(stored, s)
  const [severityId, severity] = severityIds[s.severity]
  const [statusId, status] = statusIds[s.outcome]
  const actor = stored.meta.actor
  const [actorTypeId, actorType] = actorTypes[actor.kind]
  const { src_endpoint, ...attributes } = m.attributes as { src_endpoint?: Record<string, unknown> }
  return stringify({
    class_uid: m.class.uid,
    class_name: m.class.name,
    category_uid: m.class.categoryUid,
    category_name: m.class.categoryName,
    activity_id: m.activityId,
    activity_name: m.activityName,
    type_uid: m.class.uid * 100 + m.activityId,
    type_name: `${m.class.name}: ${m.activityName}`,
    time: stored.recordedAt.getTime(),
    severity_id: severityId,
    severity,
    status_id: statusId,
    status,
    status_detail: s.reason,
    message: s.message,
    count: s.count,
    start_time: s.firstAt?.getTime(),
    end_time: s.lastAt?.getTime(),
    duration: s.durationMs,
    metadata: {
      version: OcsfVersion,
      uid: stored.id,
      sequence: stored.position,
      event_code: stored.type,
      product: { name: "connect", vendor_name: "connect", version: context.productVersion },
      tenant_uid: stored.workspaceId ?? undefined,
      correlation_uid: stored.meta.correlationId
    },
    actor: { user: { type_id: actorTypeId, type: actorType, uid: actor.id } },
    src_endpoint: src_endpoint ?? (s.sourceIp === undefined ? undefined : { ip: s.sourceIp }),
    ...attributes,
    unmapped: {
      connect: {
        ...logRecord(stored, s),
        hub_id: stored.meta.hubId,
        data: storedJson(stored.dataJson),
        meta: storedJson(stored.metaJson)
      }
    }
  })
}
