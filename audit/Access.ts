/**
 * `connect audit access`, the pure part: who could reach a service at a moment, by folding the log up to that moment's
 * position (`evolve`, then `answer`). The fold reads only events; it never consults today's read models, so the
 * answer is the one the hub would have given then. Readers (audit/PgAccess.ts, `readFromLog` below) choose which
 * events to fold; folding the whole log up to the position gives the same answer.
 */
import { Data, Effect, Either, Stream } from "effect"
import { EventLog, type EventLogError, pagesAhead, type StoredEvent } from "../core/EventLog.ts"
import { type Event } from "../core/Events.ts"
import { type AuditQueryError, parseFilters, parseTime } from "./Query.ts"

/** Why an access question has no answer; the process exits with code 1. */
export class AccessError extends Data.TaggedError("AccessError")<{
  readonly reason: "NotFound" | "Ambiguous" | "EmptyLog"
  readonly message: string
}> {}

/** The question: a service (its name or id, optionally in one workspace) at an instant. */
export interface AccessQuery {
  /** A service name, or a service id (lowercase). */
  readonly service: string
  readonly workspace?: string | undefined
  readonly at: Date
}

/** The event the answer is as of: the last one recorded at or before the instant asked about (by time, then position). */
export interface AsOf {
  readonly position: number
  readonly recordedAt: Date
}

/** One event as the fold reads it (a `StoredEvent` is one). */
export type AccessFact = Pick<StoredEvent, "position" | "recordedAt" | "workspaceId" | "event">

/** An agent as the log said at the position. */
export interface AgentState {
  readonly agentId: string
  readonly workspaceId: string | null
  readonly label: string
  /** The latest instant one of its tokens is accepted until (the current one, or the previous one after a rotation). */
  readonly tokenValidUntil: Date
  readonly revokedAt?: Date
  readonly online: boolean
  readonly connectedAt?: Date
  readonly ip?: string
  readonly transport?: string
  /** Targets it may expose; absent: anything but cloud metadata addresses. */
  readonly allow?: ReadonlyArray<string>
}

/** A service name in a workspace as the log said at the position. */
export interface ServiceState {
  readonly serviceId: string
  readonly workspaceId: string | null
  readonly name: string
  readonly exposed: boolean
  /** The agent that exposed it last. */
  readonly agentId: string
  readonly target: string
  /** When it was last exposed, unexposed or released. */
  readonly since: Date
}

/** A share or a public link onto services, with its expiry and revocation. */
export interface GrantState {
  readonly id: string
  readonly workspaceId: string | null
  readonly serviceIds: ReadonlyArray<string>
  readonly createdAt: Date
  readonly expiresAt: Date
  readonly revokedAt?: Date
  /** A share's permissions, or a link's methods, path prefixes and rate limit. */
  readonly detail: Readonly<Record<string, unknown>>
}

/** Everything the fold keeps. */
export interface AccessState {
  readonly agents: ReadonlyMap<string, AgentState>
  readonly services: ReadonlyMap<string, ServiceState>
  readonly shares: ReadonlyMap<string, GrantState>
  readonly links: ReadonlyMap<string, GrantState>
}

/** The state before any event. */
export const initialState: AccessState = { agents: new Map(), services: new Map(), shares: new Map(), links: new Map() }

/** The event types the fold reads; every other type leaves the state as it is. */
export const ACCESS_TYPES = [
  "AgentProvisioned", "AgentTokenRotated", "AgentTokenRevoked", "AgentConnected", "AgentDisconnected",
  "AgentAllowListSet", "ServiceExposed", "ServiceUnexposed", "ServiceReleased", "ShareCreated", "ShareRevoked",
  "LinkCreated", "LinkRevoked"
] as const satisfies ReadonlyArray<Event["_tag"]>

const set = <V>(map: ReadonlyMap<string, V>, key: string, value: V): ReadonlyMap<string, V> => new Map(map).set(key, value)

const update = <V>(map: ReadonlyMap<string, V>, key: string, f: (v: V) => V): ReadonlyMap<string, V> => {
  const v = map.get(key)
  return v === undefined ? map : set(map, key, f(v))
}

/** The agent part of `evolve`. */
const evolveAgent = (agents: AccessState["agents"], fact: AccessFact, e: Event): AccessState["agents"] => {
  switch (e._tag) {
    case "AgentProvisioned":
      return set(agents, e.agentId, {
        agentId: e.agentId, workspaceId: fact.workspaceId, label: e.label, tokenValidUntil: e.expiresAt, online: false
      })
    case "AgentTokenRotated":
      // The old token stays accepted until oldValidUntil, the new one until newExpiresAt: either lets it in.
      return update(agents, e.agentId, (a) => ({
        ...a, tokenValidUntil: new Date(Math.max(e.newExpiresAt.getTime(), e.oldValidUntil.getTime()))
      }))
    case "AgentTokenRevoked":
      return update(agents, e.agentId, (a) => (a.revokedAt ? a : { ...a, revokedAt: fact.recordedAt }))
    case "AgentConnected":
      return update(agents, e.agentId, (a) => ({ ...a, online: true, connectedAt: fact.recordedAt, ip: e.ip, transport: e.transport }))
    case "AgentDisconnected":
      // A replaced connection ends after its successor connected: the agent is still online (as the agents read model).
      return e.reason === "replaced" ? agents : update(agents, e.agentId, (a) => ({ ...a, online: false }))
    case "AgentAllowListSet":
      return update(agents, e.agentId, ({ allow: _, ...a }) => (e.allow ? { ...a, allow: e.allow } : a))
    default:
      return agents
  }
}

/** The service, share and link part of `evolve`. */
const evolveGrants = (state: AccessState, fact: AccessFact, e: Event): AccessState => {
  const at = fact.recordedAt
  switch (e._tag) {
    case "ServiceExposed":
      return { ...state, services: set(state.services, e.serviceId, {
        serviceId: e.serviceId, workspaceId: fact.workspaceId, name: e.name, exposed: true, agentId: e.agentId,
        target: `${e.targetHost}:${e.targetPort}`, since: at
      }) }
    case "ServiceUnexposed":
    case "ServiceReleased":
      return { ...state, services: update(state.services, e.serviceId, (s) => ({ ...s, exposed: false, since: at })) }
    case "ShareCreated":
      return { ...state, shares: set(state.shares, e.shareId, {
        id: e.shareId, workspaceId: fact.workspaceId, serviceIds: e.services.map((s) => s.serviceId), createdAt: at,
        expiresAt: e.expiresAt, detail: { permissions: e.permissions }
      }) }
    case "ShareRevoked":
      return { ...state, shares: update(state.shares, e.shareId, (s) => (s.revokedAt ? s : { ...s, revokedAt: at })) }
    case "LinkCreated":
      return { ...state, links: set(state.links, e.linkId, {
        id: e.linkId, workspaceId: fact.workspaceId, serviceIds: [e.serviceId], createdAt: at, expiresAt: e.expiresAt,
        detail: { methods: e.methods, pathPrefixes: e.pathPrefixes, rateLimitPerMinute: e.rateLimitPerMinute }
      }) }
    case "LinkRevoked":
      return { ...state, links: update(state.links, e.linkId, (l) => (l.revokedAt ? l : { ...l, revokedAt: at })) }
    default:
      return state
  }
}

/** The state after one more event (in position order); unknown and unrelated events change nothing. */
export const evolve = (state: AccessState, fact: AccessFact): AccessState => {
  if (fact.event._tag === "UnknownEvent") return state
  const e = fact.event
  const agents = evolveAgent(state.agents, fact, e)
  return evolveGrants(agents === state.agents ? state : { ...state, agents }, fact, e)
}

/** Folds facts in position order (they are sorted first; a reader may hand them in any order). */
export const fold = (facts: Iterable<AccessFact>): AccessState =>
  [...facts].sort((a, b) => a.position - b.position).reduce(evolve, initialState)

/** The answer: the service then, whether it could be reached, and by whom. */
export interface Access {
  readonly at: Date
  readonly asOf: AsOf
  readonly service: ServiceState & {
    readonly agentLabel?: string
    readonly agentOnline: boolean
    /** The exposing agent's allow list then (it bounds what may be exposed, not who may reach). */
    readonly allow?: ReadonlyArray<string>
  }
  /** Whether a reach for it would have been routed then (exposed, and its agent online and not revoked). */
  readonly reachable: boolean
  readonly unreachable?: "not_exposed" | "agent_offline" | "agent_revoked"
  /** Agents of its workspace that were online then, not revoked, with a token valid at `at`: each could reach it. */
  readonly agents: ReadonlyArray<AgentState>
  /** Shares including it that were neither revoked nor expired at `at`. */
  readonly shares: ReadonlyArray<GrantState>
  /** Public links onto it that were neither revoked nor expired at `at`. */
  readonly links: ReadonlyArray<GrantState>
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** Whether the query's `service` is a service id (the parsed query has it lowercase) rather than a name. */
export const isServiceId = (service: string): boolean => UUID.test(service)

/** Edit distance between two short names (names are at most 63 characters). */
const distance = (a: string, b: string): number => {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const next = [i]
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    row = next
  }
  return row[b.length]!
}

/** Up to 5 of `names` close to `name` (a typo away, or one containing the other), closest first. */
export const nearNames = (name: string, names: Iterable<string>): ReadonlyArray<string> =>
  [...new Set(names)]
    .map((n) => ({ n, d: n.includes(name) || name.includes(n) ? 0.5 : distance(name.toLowerCase(), n.toLowerCase()) }))
    .filter(({ d, n }) => n !== name && d <= Math.max(2, Math.floor(name.length / 4)))
    .sort((x, y) => x.d - y.d || x.n.localeCompare(y.n))
    .slice(0, 5)
    .map(({ n }) => n)

/** The error for a service the log did not know at the position; `names` are the names it did know, for hints. */
export const notFound = (query: AccessQuery, asOf: AsOf, names: Iterable<string>): AccessError => {
  const near = nearNames(query.service, names)
  const where = query.workspace === undefined ? "" : ` in workspace ${query.workspace}`
  return new AccessError({
    reason: "NotFound",
    message: `no service "${query.service}"${where} had been exposed as of position ${asOf.position} ` +
      `(${asOf.recordedAt.toISOString()})${near.length > 0 ? `; did you mean ${near.join(", ")}?` : ""}`
  })
}

/** The service the query names: by id or name, in its workspace if given; exactly one, or an error. */
export const pickService = (state: AccessState, query: AccessQuery, asOf: AsOf): ServiceState | AccessError => {
  const byId = isServiceId(query.service)
  const found = [...state.services.values()].filter((s) =>
    (byId ? s.serviceId === query.service : s.name === query.service) &&
    (query.workspace === undefined || s.workspaceId === query.workspace)
  )
  if (found.length === 0) return notFound(query, asOf, [...state.services.values()].map((s) => s.name))
  if (found.length > 1) {
    return new AccessError({
      reason: "Ambiguous",
      message: `"${query.service}" names a service in ${found.length} workspaces (${
        found.map((s) => s.workspaceId).join(", ")
      }); choose one with --workspace`
    })
  }
  return found[0]!
}

const validAt = (g: GrantState, serviceId: string, at: Date) =>
  g.serviceIds.includes(serviceId) && g.revokedAt === undefined && g.expiresAt > at

/** Who could reach `service` at `at`, from the state folded up to `asOf`. */
export const answer = (state: AccessState, service: ServiceState, at: Date, asOf: AsOf): Access => {
  const owner = state.agents.get(service.agentId)
  const unreachable = !service.exposed
    ? "not_exposed" as const
    : owner?.revokedAt
    ? "agent_revoked" as const
    : !owner?.online
    ? "agent_offline" as const
    : undefined
  const agents = [...state.agents.values()]
    .filter((a) => a.workspaceId === service.workspaceId && a.online && !a.revokedAt && a.tokenValidUntil > at)
    .sort((a, b) => a.label.localeCompare(b.label) || a.agentId.localeCompare(b.agentId))
  const byCreation = (a: GrantState, b: GrantState) => a.createdAt.getTime() - b.createdAt.getTime()
  return {
    at,
    asOf,
    service: {
      ...service,
      agentOnline: owner?.online ?? false,
      ...(owner && { agentLabel: owner.label }),
      ...(owner?.allow && { allow: owner.allow })
    },
    reachable: unreachable === undefined,
    ...(unreachable && { unreachable }),
    agents,
    shares: [...state.shares.values()].filter((s) => validAt(s, service.serviceId, at)).sort(byCreation),
    links: [...state.links.values()].filter((l) => validAt(l, service.serviceId, at)).sort(byCreation)
  }
}

/**
 * The position the answer for `at` is as of: the last event recorded at or before it, by time, then by position (a
 * batch shares its time); `EmptyLog` when there is none. Positions are commit order and times agree with it but for
 * the clock skew between hubs (seconds at most).
 */
export const asOfIn = (facts: ReadonlyArray<Pick<StoredEvent, "position" | "recordedAt">>, at: Date): AsOf | AccessError => {
  let last: AsOf | undefined
  for (const f of facts) {
    if (f.recordedAt > at) continue
    const later = !last || f.recordedAt > last.recordedAt || (+f.recordedAt === +last.recordedAt && f.position > last.position)
    if (later) last = { position: f.position, recordedAt: f.recordedAt }
  }
  return last ?? new AccessError({ reason: "EmptyLog", message: `the log holds no event recorded at or before ${at.toISOString()}` })
}

/**
 * Answers through the `EventLog` contract alone: reads the whole log, folds every event up to the position of `at`.
 * Right for any implementation (the memory log in tests); audit/PgAccess.ts reads only what the answer needs.
 */
export const readFromLog = (query: AccessQuery): Effect.Effect<Access, AccessError | EventLogError, EventLog> =>
  Effect.gen(function*() {
    const log = yield* EventLog
    const facts: Array<StoredEvent> = []
    yield* Stream.runForEach(pagesAhead(log.readAll, 1_000), (page) => Effect.sync(() => facts.push(...page)))
    const asOf = asOfIn(facts, query.at)
    if (asOf instanceof AccessError) return yield* asOf
    const state = fold(facts.filter((f) => f.position <= asOf.position))
    const service = pickService(state, query, asOf)
    if (service instanceof AccessError) return yield* service
    return answer(state, service, query.at, asOf)
  })

/** What `connect audit access` was given. */
export interface RawQuery {
  readonly service: string
  readonly workspace?: string | undefined
  readonly at: string
}

/**
 * The question from what the user typed, each value checked as `connect audit` checks its filters (a service name or
 * id, a workspace id, a time as `--since` takes it), so a hostile value is a clear error; relative times count back
 * from `now`.
 */
export const parseQuery = (raw: RawQuery, now: Date): Either.Either<AccessQuery, AuditQueryError> =>
  Either.gen(function*() {
    const at = yield* parseTime("--at", raw.at, now)
    const filters = yield* parseFilters({ service: raw.service, workspace: raw.workspace, limit: 1 }, now)
    return { service: filters.service!, at, ...(filters.workspace !== undefined && { workspace: filters.workspace }) }
  })
