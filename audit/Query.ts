/**
 * The filters of `connect audit`: parsed and checked from what the user typed (every value bounded and well formed,
 * so a bad one is a clear error, never an SQL error), and matched against one stored event for `--follow`, by the
 * same rules the database applies (audit/PgQuery.ts).
 */
import * as Net from "node:net"
import { Either, Schema } from "effect"
import { eventTypes } from "../core/Events.ts"
import { GROUPS, type Group, type Outcome, outcomeOf, typesOf } from "./Groups.ts"

/** A filter value the user gave is not usable; the process exits with code 2. */
export class AuditQueryError extends Schema.TaggedError<AuditQueryError>()("AuditQueryError", {
  /** The option at fault, e.g. `--since`. */
  option: Schema.String,
  message: Schema.String
}) {}

/** Longest filter value accepted, in UTF-16 code units: longer than any id, label, name or address. */
export const MAX_VALUE_LENGTH = 256

/** Largest `--limit`. */
export const MAX_LIMIT = 10_000

/** `--limit` when none is given. */
export const DEFAULT_LIMIT = 50

/** An address range: `address/bits`, as `--ip` selects it. */
export interface Cidr {
  readonly address: string
  readonly bits: number
  readonly family: "ipv4" | "ipv6"
}

/** The filters as typed, each absent when not given. */
export interface RawFilters {
  readonly since?: string | undefined
  readonly until?: string | undefined
  readonly type?: string | undefined
  readonly workspace?: string | undefined
  readonly agent?: string | undefined
  readonly service?: string | undefined
  readonly outcome?: string | undefined
  readonly ip?: string | undefined
  readonly limit?: number | undefined
}

/** The filters, checked. */
export interface Filters {
  readonly since?: Date
  readonly until?: Date
  /** Event types selected by `--type` (a group stands for its types). */
  readonly types?: ReadonlyArray<string>
  readonly workspace?: string
  /** An agent id (lowercase) or label. */
  readonly agent?: string
  /** A service id (lowercase) or name. */
  readonly service?: string
  readonly outcome?: Outcome
  readonly ip?: Cidr
  readonly limit: number
}

const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/
const SERVICE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/

/** Whether `value` is a UUID (any case). */
export const isUuid = (value: string): boolean => UUID.test(value)

const fail = (option: string, message: string) => Either.left(new AuditQueryError({ option, message: `${option}: ${message}` }))

// Code units, no `u` flag: a high surrogate not followed by a low one, or a low one not preceded by a high one.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/** `value` if it is short, has no NUL or other control character, and no lone surrogate. */
const checkValue = (option: string, value: string): Either.Either<string, AuditQueryError> => {
  if (value.length > MAX_VALUE_LENGTH) return fail(option, `too long (${value.length} characters, at most ${MAX_VALUE_LENGTH})`)
  if (LONE_SURROGATE.test(value)) return fail(option, "contains a lone surrogate (not valid Unicode)")
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value)) return fail(option, "contains a control character")
  if (value.trim() === "") return fail(option, "is empty")
  return Either.right(value.trim())
}

const UNIT_MS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }
const TIMESTAMP =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?)?$/

/**
 * A time as `--since`/`--until` take it: a duration back from `now` (`90s`, `30m`, `2h`, `7d`, `2w`) or an ISO 8601
 * date or date-time; without an offset it is UTC (as the table prints times).
 */
export const parseTime = (option: string, value: string, now: Date): Either.Either<Date, AuditQueryError> =>
  Either.flatMap(checkValue(option, value), (text) => {
    const relative = /^(\d{1,7})([smhdw])$/.exec(text)
    if (relative) return Either.right(new Date(now.getTime() - Number(relative[1]) * UNIT_MS[relative[2]!]!))
    const m = TIMESTAMP.exec(text)
    const bad = fail(option, `"${text}" is not a time: use 2h, 7d, 30m, or 2026-11-30 / 2026-11-30T14:00:00Z`)
    if (!m) return bad
    const [year, month, day, hour = "0", minute = "0", second = "0"] = m.slice(1, 7) as Array<string>
    const fields = Date.UTC(Number(year), Number(month) - 1, Number(day), Number(hour), Number(minute), Number(second))
    const check = new Date(fields)
    // Date.parse rolls 2026-02-30 over to March; a calendar date that does not exist is refused.
    if (
      check.getUTCFullYear() !== Number(year) || check.getUTCMonth() !== Number(month) - 1 ||
      check.getUTCDate() !== Number(day) || Number(hour) > 23 || Number(minute) > 59 || Number(second) > 59
    ) return bad
    const offset = m[7]
    const iso = `${year}-${month}-${day}T${hour.padStart(2, "0")}:${minute.padStart(2, "0")}:${second.padStart(2, "0")}${
      text.match(/\.\d+/)?.[0] ?? ""
    }${offset === undefined ? "Z" : offset.length === 5 ? `${offset.slice(0, 3)}:${offset.slice(3)}` : offset}`
    const date = new Date(iso)
    return Number.isNaN(date.getTime()) ? bad : Either.right(date)
  })

/**
 * An address or range as `--ip` takes it: an address (`203.0.113.7`, `2001:db8::1`), a CIDR prefix
 * (`203.0.113.0/24`, `2001:db8:85a3::/48`), or a masked address as the table prints it (`203.0.113.x`).
 */
export const parseIp = (option: string, value: string): Either.Either<Cidr, AuditQueryError> =>
  Either.flatMap(checkValue(option, value), (text) => {
    const masked = /^(\d{1,3}\.\d{1,3}\.\d{1,3})\.x$/i.exec(text)
    const [address, bitsText] = masked ? [`${masked[1]}.0`, "24"] : text.split("/", 2) as [string, string | undefined]
    const family = Net.isIPv4(address) ? "ipv4" : Net.isIPv6(address) ? "ipv6" : undefined
    if (family === undefined || (text.match(/\//g)?.length ?? 0) > 1) {
      return fail(option, `"${text}" is not an address or prefix: use 203.0.113.7, 203.0.113.0/24, 203.0.113.x or 2001:db8::/48`)
    }
    const max = family === "ipv4" ? 32 : 128
    const bits = bitsText === undefined ? max : /^\d{1,3}$/.test(bitsText) ? Number(bitsText) : Number.NaN
    if (!(bits >= 0 && bits <= max)) return fail(option, `prefix length of "${text}" must be 0 to ${max}`)
    return Either.right({ address, bits, family })
  })

/** The types `--type` selects: a group, an event type, or several separated by commas. */
export const parseTypes = (option: string, value: string): Either.Either<ReadonlyArray<string>, AuditQueryError> =>
  Either.flatMap(checkValue(option, value), (text) => {
    const types = new Set<string>()
    for (const part of text.split(",").map((p) => p.trim())) {
      if ((GROUPS as ReadonlyArray<string>).includes(part)) typesOf(part as Group).forEach((t) => types.add(t))
      else if ((eventTypes as ReadonlyArray<string>).includes(part)) types.add(part)
      else {
        return fail(option, `unknown type or group "${part}"; groups: ${GROUPS.join(", ")}; types: ${eventTypes.join(", ")}`)
      }
    }
    return Either.right([...types])
  })

/** The filters from what the user typed, or the first value at fault; relative times count back from `now`. */
export const parseFilters = (raw: RawFilters, now: Date): Either.Either<Filters, AuditQueryError> =>
  Either.gen(function*() {
    const limit = raw.limit ?? DEFAULT_LIMIT
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
      return yield* fail("--limit", `must be a whole number from 1 to ${MAX_LIMIT}`)
    }
    const since = raw.since === undefined ? undefined : yield* parseTime("--since", raw.since, now)
    const until = raw.until === undefined ? undefined : yield* parseTime("--until", raw.until, now)
    if (since && until && since > until) return yield* fail("--since", "is after --until")
    const types = raw.type === undefined ? undefined : yield* parseTypes("--type", raw.type)
    const workspace = raw.workspace === undefined ? undefined : yield* checkValue("--workspace", raw.workspace)
    if (workspace !== undefined && !isUuid(workspace)) return yield* fail("--workspace", `"${workspace}" is not a workspace id (a UUID)`)
    const agent = raw.agent === undefined ? undefined : yield* checkValue("--agent", raw.agent)
    const service = raw.service === undefined ? undefined : yield* checkValue("--service", raw.service)
    if (service !== undefined && !isUuid(service) && !SERVICE_NAME.test(service)) {
      return yield* fail("--service", `"${service}" is neither a service id nor a service name`)
    }
    const outcome = raw.outcome === undefined ? undefined : yield* checkValue("--outcome", raw.outcome)
    if (outcome !== undefined && outcome !== "allowed" && outcome !== "denied") {
      return yield* fail("--outcome", "must be allowed or denied")
    }
    const ip = raw.ip === undefined ? undefined : yield* parseIp("--ip", raw.ip)
    const lower = (v: string | undefined) => (v !== undefined && isUuid(v) ? v.toLowerCase() : v)
    return {
      limit,
      ...(since && { since }),
      ...(until && { until }),
      ...(types && { types }),
      ...(workspace !== undefined && { workspace: workspace.toLowerCase() }),
      ...(agent !== undefined && { agent: lower(agent)! }),
      ...(service !== undefined && { service: lower(service)! }),
      ...(outcome !== undefined && { outcome }),
      ...(ip && { ip })
    } satisfies Filters
  })

/** Most ids an agent label or service name may stand for: beyond, the statement would grow without bound. */
export const MAX_RESOLVED = 100

/** The ids an agent label or a service name stands for, looked up once before querying (see PgQuery.resolve). */
export interface Resolved {
  readonly agentIds: ReadonlyArray<string>
  readonly serviceIds: ReadonlyArray<string>
}

/** The service event types that carry the service's name as `name`. */
export const SERVICE_NAME_TYPES = ["ServiceExposed", "ServiceUnexposed", "ServiceReleased"] as const

/** An event as the filters see it. */
export interface FilterableEvent {
  readonly type: string
  readonly workspaceId: string | null
  readonly recordedAt: Date
  readonly data: unknown
  readonly meta: unknown
}

const record = (v: unknown): Record<string, unknown> => (typeof v === "object" && v !== null ? (v as Record<string, unknown>) : {})

/**
 * The address an event came from: the meta's `sourceIp`, else the event's own `ip` (auth failures, connections,
 * link requests), else `newIp` (an agent's address change). `--ip` matches it; the table shows it.
 */
export const sourceIpOf = (data: unknown, meta: unknown): string | undefined => {
  for (const v of [record(meta).sourceIp, record(data).ip, record(data).newIp]) if (typeof v === "string") return v
  return undefined
}

/** The agents an event is about or was caused by: `agentId`, `fromAgentId`, `toAgentId`, and an agent actor. */
export const agentIdsOf = (data: unknown, meta: unknown): ReadonlyArray<string> => {
  const d = record(data)
  const actor = record(record(meta).actor)
  const ids = [d.agentId, d.fromAgentId, d.toAgentId, actor.kind === "agent" ? actor.id : undefined]
  return ids.filter((id): id is string => typeof id === "string")
}

const inCidr = (address: string | undefined, cidr: Cidr): boolean => {
  if (address === undefined) return false
  const family = Net.isIPv4(address) ? "ipv4" : Net.isIPv6(address) ? "ipv6" : undefined
  if (family !== cidr.family) return false
  const list = new Net.BlockList()
  list.addSubnet(cidr.address, cidr.bits, cidr.family)
  return list.check(address, family)
}

/** Whether an event mentions the service by id (its own, or among a share's) or by name. */
const mentionsService = (event: FilterableEvent, service: string, resolved: Resolved): boolean => {
  const d = record(event.data)
  const ids = isUuid(service) ? [service] : resolved.serviceIds
  if (typeof d.serviceId === "string" && ids.includes(d.serviceId)) return true
  const shared = Array.isArray(d.services) ? d.services.map(record) : []
  if (shared.some((s) => ids.includes(s.serviceId as string) || s.name === service)) return true
  if (isUuid(service)) return false
  return d.serviceName === service || d.requestedName === service ||
    ((SERVICE_NAME_TYPES as ReadonlyArray<string>).includes(event.type) && d.name === service)
}

/** Whether `event` passes every filter (the limit aside): what `--follow` applies to each new event. */
export const matches = (filters: Filters, resolved: Resolved, event: FilterableEvent): boolean => {
  if (filters.since && event.recordedAt < filters.since) return false
  if (filters.until && event.recordedAt > filters.until) return false
  if (filters.types && !filters.types.includes(event.type)) return false
  if (filters.workspace && event.workspaceId !== filters.workspace) return false
  if (filters.agent !== undefined) {
    const ids = isUuid(filters.agent) ? [filters.agent, ...resolved.agentIds] : resolved.agentIds
    if (!agentIdsOf(event.data, event.meta).some((id) => ids.includes(id))) return false
  }
  if (filters.service !== undefined && !mentionsService(event, filters.service, resolved)) return false
  if (filters.outcome && outcomeOf(event.type, event.data) !== filters.outcome) return false
  if (filters.ip && !inCidr(sourceIpOf(event.data, event.meta), filters.ip)) return false
  return true
}
