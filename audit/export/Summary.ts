/**
 * What every export format says about a stored event beyond its envelope: its group, outcome and severity, the
 * principal it is about, the source address, reason, coalescing window and a one-line message, plus the chain
 * hashes in hex. Pure; one entry per catalog type, so a new event type does not compile until it is summarized.
 */
import { isIP } from "node:net"
import type { StoredEvent } from "../../core/EventLog.ts"
import type { Event, EventType } from "../../core/Events.ts"

/** The family of an event; `unknown` for a type this build's catalog does not know. */
export type Group = "workspace" | "apikey" | "agent" | "service" | "tunnel" | "share" | "link" | "audit" | "unknown"

/** Whether what the event records succeeded, from the hub's point of view. */
export type Outcome = "success" | "failure" | "unknown"

/**
 * How much attention an event deserves: a refusal is `low`, a coalesced or rate-limited refusal (someone kept trying)
 * is `medium`, every other fact `informational`; an unknown type is `unknown`.
 */
export type Severity = "informational" | "low" | "medium" | "unknown"

/** The principal an event is about: an agent, an API key, or the workspace presenting a share code. */
export interface Principal {
  readonly kind: "agent" | "apikey" | "workspace"
  readonly id: string | undefined
  readonly name: string | undefined
  /** The displayable head of the credential presented (token or key prefix), when the principal is not known. */
  readonly credential: string | undefined
}

/** The facts a format maps. */
export interface Summary {
  readonly known: boolean
  readonly group: Group
  readonly outcome: Outcome
  readonly severity: Severity
  readonly message: string
  /** The address the action came from, only when it is a valid IPv4 or IPv6 address (SIEM ip fields reject others). */
  readonly sourceIp: string | undefined
  /** Every valid address the event names (source, previous address), without repeats. */
  readonly relatedIps: ReadonlyArray<string>
  readonly userAgent: string | undefined
  readonly subject: Principal | undefined
  readonly reason: string | undefined
  /** For a coalesced event: how many occurrences it stands for, and the first and last of its window. */
  readonly count: number | undefined
  readonly firstAt: Date | undefined
  readonly lastAt: Date | undefined
  readonly durationMs: number | undefined
  /** `prev_hash` and `hash`, lowercase hex. */
  readonly prevHash: string
  readonly hash: string
}

/** Bytes as lowercase hex. */
export const hex = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex")

/** A Date as ISO 8601 with milliseconds, or undefined for an invalid one. */
export const iso = (date: Date | undefined): string | undefined =>
  date === undefined || Number.isNaN(date.getTime()) ? undefined : date.toISOString()

/**
 * The log's own record of `stored` in snake_case, chain hashes in hex: what ECS's `connect` and OCSF's
 * `unmapped.connect` begin with.
 */
export const logRecord = (stored: StoredEvent, s: Summary) => ({
  position: stored.position,
  id: stored.id,
  prev_hash: s.prevHash,
  hash: s.hash,
  stream: stored.stream,
  version: stored.version,
  workspace_id: stored.workspaceId,
  type: stored.type
})

/** The address when it is a plain IPv4 or IPv6 address (no zone index, no port), else undefined. */
export const validIp = (ip: unknown): string | undefined =>
  typeof ip === "string" && isIP(ip) !== 0 && !ip.includes("%") ? ip : undefined

interface Facts {
  readonly group: Exclude<Group, "unknown">
  readonly outcome?: Outcome
  readonly severity?: Severity
  readonly message: string
  readonly subject?: Principal | undefined
  readonly reason?: string | undefined
  /** An address carried in the payload (the connecting client's), preferred over `meta.sourceIp`. */
  readonly ip?: string
  readonly previousIp?: string
  readonly userAgent?: string
  readonly count?: number | undefined
  readonly firstAt?: Date | undefined
  readonly lastAt?: Date | undefined
  readonly durationMs?: number
}

const agent = (id: string | undefined, name?: string, credential?: string): Principal => ({
  kind: "agent",
  id,
  name,
  credential
})
const apiKey = (id: string | undefined, name?: string, credential?: string): Principal => ({
  kind: "apikey",
  id,
  name,
  credential
})

/** A refusal someone can repeat: `medium` once it was coalesced or rate limited, else `low`. */
const refusal = (count: number | undefined, reason: string | undefined): Severity =>
  count !== undefined || reason === "rate_limited" ? "medium" : "low"

const times = (count: number | undefined) => (count === undefined ? "" : ` (${count} times)`)
const when = (date: Date) => iso(date) ?? "an invalid date"

type Describe = { readonly [T in EventType]: (event: Extract<Event, { readonly _tag: T }>) => Facts }

const describe: Describe = {
  WorkspaceCreated: (e) => ({ group: "workspace", message: `workspace "${e.name}" created` }),
  ApiKeyCreated: (e) => ({
    group: "apikey",
    message: `API key "${e.name}" (${e.prefix}) created`,
    subject: apiKey(e.apiKeyId, e.name, e.prefix)
  }),
  ApiKeyRevoked: (e) => ({ group: "apikey", message: `API key ${e.apiKeyId} revoked`, subject: apiKey(e.apiKeyId) }),
  ApiKeyAuthFailed: (e) => ({
    group: "apikey",
    outcome: "failure",
    severity: refusal(e.count, e.reason),
    message: `API key refused from ${e.ip}: ${e.reason}${times(e.count)}`,
    subject: apiKey(e.apiKeyId, undefined, e.keyPrefix),
    reason: e.reason,
    ip: e.ip,
    count: e.count,
    firstAt: e.firstAt,
    lastAt: e.lastAt
  }),
  AgentProvisioned: (e) => ({
    group: "agent",
    message: `agent "${e.label}" provisioned, its token valid until ${when(e.expiresAt)}`,
    subject: agent(e.agentId, e.label)
  }),
  AgentTokenRotated: (e) => ({
    group: "agent",
    message: `agent ${e.agentId} rotated its token, the old one valid until ${when(e.oldValidUntil)}`,
    subject: agent(e.agentId)
  }),
  AgentTokenRevoked: (e) => ({
    group: "agent",
    message: `agent ${e.agentId} tokens revoked` + (e.reason === undefined ? "" : `: ${e.reason}`),
    subject: agent(e.agentId),
    reason: e.reason
  }),
  AgentConnected: (e) => ({
    group: "agent",
    message: `agent ${e.agentId} connected from ${e.ip} over ${e.transport}`,
    subject: agent(e.agentId),
    ip: e.ip,
    userAgent: e.userAgent
  }),
  AgentDisconnected: (e) => ({
    group: "agent",
    message: `agent ${e.agentId} disconnected after ${e.durationMs} ms: ${e.reason}`,
    subject: agent(e.agentId),
    reason: e.reason,
    durationMs: e.durationMs
  }),
  AgentIpChanged: (e) => ({
    group: "agent",
    message: `agent ${e.agentId} connected from ${e.newIp}, previously from ${e.previousIp}`,
    subject: agent(e.agentId),
    ip: e.newIp,
    previousIp: e.previousIp
  }),
  AgentAuthFailed: (e) => ({
    group: "agent",
    outcome: "failure",
    severity: refusal(e.count, e.reason),
    message: `agent token refused from ${e.ip}: ${e.reason}${times(e.count)}`,
    subject: agent(e.agentId, undefined, e.tokenPrefix),
    reason: e.reason,
    ip: e.ip,
    count: e.count,
    firstAt: e.firstAt,
    lastAt: e.lastAt
  }),
  AgentAllowListSet: (e) => ({
    group: "agent",
    message: e.allow === undefined
      ? `agent ${e.agentId} may expose any target again`
      : `agent ${e.agentId} may expose only ${e.allow.join(", ")}`,
    subject: agent(e.agentId)
  }),
  ServiceExposed: (e) => ({
    group: "service",
    message: `service "${e.name}" exposed by agent ${e.agentId} to ${e.targetHost}:${e.targetPort}`
  }),
  ServiceUnexposed: (e) => ({ group: "service", message: `service "${e.name}" unexposed by agent ${e.agentId}` }),
  ServiceReleased: (e) => ({
    group: "service",
    message: `service "${e.name}" of agent ${e.agentId} released: ${e.reason}`,
    reason: e.reason
  }),
  TunnelOpened: (e) => ({
    group: "tunnel",
    message: `tunnel ${e.tunnelId} opened to service "${e.serviceName}"` +
      (e.viaShareId === undefined ? "" : ` through share ${e.viaShareId}`)
  }),
  TunnelClosed: (e) => {
    const failed = e.reason === "connect_failed" || e.reason === "error"
    return {
      group: "tunnel",
      outcome: failed ? "failure" : "success",
      severity: failed ? "low" : "informational",
      message: `tunnel ${e.tunnelId} closed after ${e.durationMs} ms, ${e.bytesUp} bytes up and ${e.bytesDown} down: ` +
        e.reason,
      reason: e.reason,
      durationMs: e.durationMs
    }
  },
  ReachDenied: (e) => ({
    group: "tunnel",
    outcome: "failure",
    severity: refusal(e.count, e.reason),
    message: `reach to "${e.requestedName}" denied: ${e.reason}${times(e.count)}`,
    subject: e.fromAgentId === undefined ? undefined : agent(e.fromAgentId),
    reason: e.reason,
    count: e.count,
    firstAt: e.firstAt,
    lastAt: e.lastAt
  }),
  ShareCreated: (e) => ({
    group: "share",
    message: `share ${e.shareId} of ${e.services.map((s) => s.name).join(", ")} created, valid until ${when(e.expiresAt)}`
  }),
  ShareRevoked: (e) => ({ group: "share", message: `share ${e.shareId} revoked` }),
  ShareAccessed: (e) => ({
    group: "share",
    outcome: e.outcome === "allowed" ? "success" : "failure",
    severity: e.outcome === "allowed" ? "informational" : refusal(undefined, e.reason),
    message: `share ${e.shareId} ${e.outcome}` + (e.reason === undefined ? "" : `: ${e.reason}`),
    subject: { kind: "workspace", id: e.byWorkspaceId, name: undefined, credential: undefined },
    reason: e.reason
  }),
  ShareJoined: (e) => ({
    group: "share",
    outcome: "success",
    message: `agent ${e.agentId} of workspace ${e.peerWorkspaceId} joined share ${e.shareId}`,
    subject: agent(e.agentId)
  }),
  LinkCreated: (e) => ({
    group: "link",
    message: `link ${e.linkId} to service ${e.serviceId} created, valid until ${when(e.expiresAt)}`
  }),
  LinkRevoked: (e) => ({ group: "link", message: `link ${e.linkId} revoked` }),
  CheckpointSigned: (e) => ({
    group: "audit",
    message: `checkpoint signed by key ${e.keyId} at position ${e.position} (head ${e.headHash.slice(0, 16)}…)`
  }),
  SigningKeyRotated: (e) => ({
    group: "audit",
    message: e.previousKeyId === undefined
      ? `checkpoint signing key ${e.keyId} created`
      : `checkpoint signing key rotated from ${e.previousKeyId} to ${e.keyId}`
  }),
  ConsoleSignedIn: (e) => ({
    group: "apikey",
    message: `console session ${e.session} opened with API key ${e.apiKeyId} (${e.scope}), until ${when(e.expiresAt)}`,
    subject: apiKey(e.apiKeyId)
  }),
  ConsoleSignedOut: (e) => ({
    group: "apikey",
    message: `console session ${e.session} ended (${e.reason}) after ${e.durationMs} ms`,
    subject: apiKey(e.apiKeyId),
    reason: e.reason,
    durationMs: e.durationMs
  }),
  ConsoleSignInFailed: (e) => ({
    group: "apikey",
    outcome: "failure",
    severity: refusal(e.count, e.reason),
    message: `console sign-in refused from ${e.ip}: ${e.reason}${times(e.count)}`,
    subject: apiKey(e.apiKeyId, undefined, e.keyPrefix),
    reason: e.reason,
    ip: e.ip,
    count: e.count,
    firstAt: e.firstAt,
    lastAt: e.lastAt
  }),
  AuditRead: (e) => ({
    group: "audit",
    message: `audit ${e.kind} read ${e.count} event${e.count === 1 ? "" : "s"}` +
      (e.fromPosition === undefined ? "" : ` (positions ${e.fromPosition}–${e.toPosition ?? e.fromPosition})`),
    subject: e.apiKeyId === undefined ? undefined : apiKey(e.apiKeyId)
  }),
  LinkAccessed: (e) => ({
    group: "link",
    outcome: e.outcome === "allowed" ? "success" : "failure",
    severity: e.outcome === "allowed" ? "informational" : refusal(undefined, e.reason),
    message: `${e.method} ${e.path} through ${e.linkId === undefined ? "an unknown link" : `link ${e.linkId}`} answered ${e.status}` +
      (e.reason === undefined ? "" : `: ${e.reason}`),
    reason: e.reason,
    ip: e.ip,
    durationMs: e.durationMs
  })
}

/** The facts of one stored event; an event of a type this build does not know is summarized from its envelope alone. */
export const summarize = (stored: StoredEvent): Summary => {
  const event = stored.event
  const chain = { prevHash: hex(stored.prevHash), hash: hex(stored.hash) }
  const metaIp = validIp(stored.meta.sourceIp)
  if (event._tag === "UnknownEvent") {
    return {
      known: false,
      group: "unknown",
      outcome: "unknown",
      severity: "unknown",
      message: `event of a type this build does not know: ${stored.type}`,
      sourceIp: metaIp,
      relatedIps: metaIp === undefined ? [] : [metaIp],
      userAgent: stored.meta.userAgent,
      subject: undefined,
      reason: undefined,
      count: undefined,
      firstAt: undefined,
      lastAt: undefined,
      durationMs: undefined,
      ...chain
    }
  }
  const facts = (describe[event._tag] as (e: Event) => Facts)(event)
  const ip = validIp(facts.ip)
  const sourceIp = ip ?? metaIp
  const related = [sourceIp, validIp(facts.previousIp), metaIp].filter((a): a is string => a !== undefined)
  return {
    known: true,
    group: facts.group,
    outcome: facts.outcome ?? "success",
    severity: facts.severity ?? "informational",
    message: facts.message,
    sourceIp,
    relatedIps: [...new Set(related)],
    userAgent: facts.userAgent ?? stored.meta.userAgent,
    subject: facts.subject,
    reason: facts.reason,
    count: facts.count,
    firstAt: facts.firstAt,
    lastAt: facts.lastAt,
    durationMs: facts.durationMs,
    ...chain
  }
}

/** The words of an event type, for titles: `AgentTokenRotated` → `Agent token rotated`; other text as it is. */
export const title = (type: string): string =>
  /^[A-Z][A-Za-z0-9]*$/.test(type)
    ? type.replace(/(?<=[a-z0-9])([A-Z])/g, (c) => " " + c.toLowerCase()).replace(/^Api /, "API ").replace(/ ip /, " IP ")
    : type
