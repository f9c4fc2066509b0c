/**
 * How `connect audit` classifies events: the group of every event type (what `--type agent` and the like select)
 * and the outcome of an event (allowed or denied), each decided in one place.
 */
import type { EventType } from "../core/Events.ts"

/** The groups `--type` accepts besides a type name. */
export const GROUPS = ["agent", "service", "tunnel", "share", "link", "auth", "admin", "audit"] as const

/** A group of event types. */
export type Group = (typeof GROUPS)[number]

/**
 * The group of every event type of the catalog. Typed as a total record, so a new type without a group does not
 * compile (and test/audit/Groups.test.ts checks the catalog at run time too). `auth` is refused credentials; an
 * admin's acts on an agent or a service stay in that aggregate's group.
 */
export const GROUP_OF: { readonly [T in EventType]: Group } = {
  WorkspaceCreated: "admin",
  ApiKeyCreated: "admin",
  ApiKeyRevoked: "admin",
  AgentProvisioned: "agent",
  AgentTokenRotated: "agent",
  AgentTokenRevoked: "agent",
  AgentConnected: "agent",
  AgentDisconnected: "agent",
  AgentIpChanged: "agent",
  AgentAllowListSet: "agent",
  AgentAuthFailed: "auth",
  ApiKeyAuthFailed: "auth",
  ServiceExposed: "service",
  ServiceUnexposed: "service",
  ServiceReleased: "service",
  TunnelOpened: "tunnel",
  TunnelClosed: "tunnel",
  ReachDenied: "tunnel",
  ShareCreated: "share",
  ShareRevoked: "share",
  ShareAccessed: "share",
  ShareJoined: "share",
  CheckpointSigned: "audit",
  SigningKeyRotated: "audit",
  AuditRead: "audit",
  ConsoleSignedIn: "audit",
  ConsoleSignedOut: "audit",
  ConsoleSignInFailed: "auth",
  LinkCreated: "link",
  LinkRevoked: "link",
  LinkAccessed: "link"
}

/** The group of a stored type, undefined for a type this build does not know. */
export const groupOf = (type: string): Group | undefined =>
  Object.hasOwn(GROUP_OF, type) ? GROUP_OF[type as EventType] : undefined

/** The types of a group, in catalog order. */
export const typesOf = (group: Group): ReadonlyArray<EventType> =>
  (Object.keys(GROUP_OF) as Array<EventType>).filter((t) => GROUP_OF[t] === group)

/** Whether an event let someone through (`allowed`) or refused or failed them (`denied`). */
export type Outcome = "allowed" | "denied"

/** The event types that always record a refusal: refused credentials and refused reach requests. */
export const ALWAYS_DENIED: ReadonlyArray<EventType> = [
  "AgentAuthFailed",
  "ApiKeyAuthFailed",
  "ReachDenied",
  "ConsoleSignInFailed"
]

/**
 * The outcome of an event: `denied` for refused credentials (AgentAuthFailed, ApiKeyAuthFailed), refused reach
 * requests (ReachDenied), a share code or link request whose `outcome` is denied (ShareAccessed, LinkAccessed; a
 * link request that failed upstream records denied too), and a tunnel that closed because its service could not be
 * connected (TunnelClosed with reason `connect_failed`); `allowed` for everything else, unknown types included.
 * The database evaluates the same rule as `connect_audit_denied(type, data)` (migration 0010); an integration test
 * checks that both agree on every type.
 */
export const outcomeOf = (type: string, data: unknown): Outcome => {
  if ((ALWAYS_DENIED as ReadonlyArray<string>).includes(type)) return "denied"
  const fields = typeof data === "object" && data !== null ? (data as Record<string, unknown>) : {}
  if ((type === "ShareAccessed" || type === "LinkAccessed") && fields.outcome === "denied") return "denied"
  if (type === "TunnelClosed" && fields.reason === "connect_failed") return "denied"
  return "allowed"
}
