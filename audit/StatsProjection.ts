/**
 * The rollup projection behind `connect audit --stats` (tables of migration 0011): every event counted into its UTC
 * hour by workspace, type, outcome, denial reason, agent and service, with the refusals it stands for and the bytes it
 * relayed; source addresses per hour; the first and last position of each hour; the latest name of each agent and
 * service. Async, from its checkpoint; folding a batch is pure (`rollup`), and since every column is a sum, a least, a
 * greatest or the value at the highest position, replaying from 0 in any batching gives identical tables.
 */
import { Effect } from "effect"
import type { StoredEvent } from "../core/EventLog.ts"
import type { Projection } from "../core/Projection.ts"
import { ProjectionSql } from "../core/ProjectionSql.ts"
import { sanitize } from "../core/Text.ts"
import { outcomeOf } from "./Groups.ts"
import { maskIp } from "../core/Mask.ts"

/** The projection's name (its checkpoint row). */
export const NAME = "audit_rollups"

/** The tables it writes (a rebuild fills shadows of all of them). */
export const TABLES = ["audit_rollup_hourly", "audit_rollup_ips", "audit_rollup_span", "audit_rollup_names"] as const

/** One hour in ms: the width of a bucket. */
export const HOUR_MS = 3_600_000

/** Event types whose `count` is the number of refusals the event stands for (coalesced windows; absent: 1). */
export const COALESCED: ReadonlyArray<string> = ["AgentAuthFailed", "ApiKeyAuthFailed", "ReachDenied", "ConsoleSignInFailed"]

// Caps on text that becomes part of a key: a btree entry must stay well under Postgres's ~2.7 kB limit, whatever a
// stored event holds, or one hostile event would stop the projection for good.
const TYPE_CAP = 128
const ID_CAP = 64
const IP_CAP = 64
const NAME_CAP = 128

/** A row of `audit_rollup_hourly`: the events of one hour that share every dimension. */
export interface HourlyRow {
  readonly hour: string
  readonly workspace_id: string | null
  readonly type: string
  readonly outcome: string
  readonly reason: string | null
  readonly agent_id: string | null
  readonly service_id: string | null
  events: number
  count: number
  bytes: number
}

/** A row of `audit_rollup_ips`: what one source address did in one hour. */
export interface IpRow {
  readonly hour: string
  readonly workspace_id: string | null
  readonly ip: string
  readonly masked: string
  events: number
  count: number
  denied: number
}

/** A row of `audit_rollup_span`: how many events one hour holds, and its first and last. */
export interface SpanRow {
  readonly hour: string
  readonly workspace_id: string | null
  readonly events: number
  readonly first_position: number
  readonly first_at: string
  readonly last_position: number
  readonly last_at: string
}

/** A row of `audit_rollup_names`: the latest name of an agent (its label) or a service. */
export interface NameRow {
  readonly kind: "agent" | "service"
  readonly id: string
  readonly workspace_id: string | null
  readonly name: string
  readonly position: number
}

/** What a batch adds to the rollup tables, one row per key. */
export interface Rollup {
  readonly hourly: ReadonlyArray<HourlyRow>
  readonly ips: ReadonlyArray<IpRow>
  readonly spans: ReadonlyArray<SpanRow>
  readonly names: ReadonlyArray<NameRow>
}

/** The dimensions and measures of one event, as the rollup counts it. */
export interface Facts {
  readonly type: string
  readonly outcome: "allowed" | "denied"
  readonly reason: string | null
  readonly agentId: string | null
  readonly serviceId: string | null
  /** Occurrences: a coalesced refusal's `count`, a coalesced read's `runs`, else 1. */
  readonly count: number
  readonly bytes: number
  readonly ip: string | null
}

// Ids, addresses and reasons are short printable ASCII: they skip the sanitizer's regular expressions (a rebuild
// folds millions of events).
const PLAIN = /^[\x20-\x7e]*$/
const str = (v: unknown, cap: number): string | null =>
  typeof v !== "string" || v === "" ? null : v.length <= cap && PLAIN.test(v) ? v : sanitize(v, cap)
const num = (v: unknown): number => (typeof v === "number" && Number.isFinite(v) && v > 0 ? Math.floor(v) : 0)

/**
 * The facts of a stored event, from its decoded `event`: an `UnknownEvent` counts by its type name only (and the
 * envelope's source address); a known one by its outcome (audit/Groups.ts), denial reason, agent (`agentId`, else
 * `fromAgentId`, else an agent actor), service, occurrences and bytes (tunnels closed and link requests).
 */
export const factsOf = (stored: StoredEvent): Facts => {
  const type = str(stored.type, TYPE_CAP) ?? ""
  const metaIp = str(stored.meta.sourceIp, IP_CAP)
  if (stored.event._tag === "UnknownEvent") {
    return { type, outcome: "allowed", reason: null, agentId: null, serviceId: null, count: 1, bytes: 0, ip: metaIp }
  }
  const e = stored.event as unknown as Record<string, unknown>
  const outcome = outcomeOf(stored.type, e)
  const actor = stored.meta.actor
  const bytes = stored.type === "TunnelClosed"
    ? num(e.bytesUp) + num(e.bytesDown)
    : stored.type === "LinkAccessed"
    ? num(e.bytes)
    : 0
  return {
    type,
    outcome,
    reason: outcome === "denied" ? str(e.reason, TYPE_CAP) : null,
    agentId: str(e.agentId, ID_CAP) ?? str(e.fromAgentId, ID_CAP) ?? (actor.kind === "agent" ? str(actor.id, ID_CAP) : null),
    serviceId: str(e.serviceId, ID_CAP),
    count: isDetailOfRefusal(stored) ? 0 : occurrences(stored.type, e),
    bytes,
    ip: metaIp ?? str(e.ip, IP_CAP) ?? str(e.newIp, IP_CAP)
  }
}

/**
 * How many occurrences an event stands for: a coalesced refusal's `count`, a coalesced `AuditRead`'s `runs`
 * (audit/PgReadWindows.ts; its `count` is the events the read returned), else 1.
 */
const occurrences = (type: string, e: Record<string, unknown>): number =>
  COALESCED.includes(type) && num(e.count) > 0 ? num(e.count) : type === "AuditRead" && num(e.runs) > 0 ? num(e.runs) : 1

/**
 * Whether the event is the operator's detail of a refusal already counted elsewhere: a `cross_workspace` ReachDenied
 * without a workspace is the hub-level twin of the `not_found` recorded in the reacher's workspace (since the audit API
 * lets workspace keys read their log), so it is an event but no second refusal. One recorded in a workspace is from a
 * hub before that change, and the only record of its refusal.
 */
export const isDetailOfRefusal = (stored: StoredEvent): boolean =>
  stored.type === "ReachDenied" && stored.workspaceId === null &&
  (stored.event as unknown as { reason?: unknown }).reason === "cross_workspace"

/** The name an event gives an agent or a service, if any. */
const nameOf = (stored: StoredEvent): Omit<NameRow, "workspace_id" | "position"> | undefined => {
  const e = stored.event as unknown as Record<string, unknown>
  const named = (kind: "agent" | "service", id: unknown, name: unknown) => {
    const i = str(id, ID_CAP)
    const n = str(name, NAME_CAP)
    return i !== null && n !== null ? { kind, id: i, name: n } : undefined
  }
  switch (stored.event._tag) {
    case "AgentProvisioned":
      return named("agent", e.agentId, e.label)
    case "ServiceExposed":
      return named("service", e.serviceId, e.name)
    case "TunnelOpened":
      return named("service", e.serviceId, e.serviceName)
    default:
      return undefined
  }
}

/** The UTC hour of an instant, as an ISO string. */
export const hourOf = (at: Date): string => new Date(Math.floor(at.getTime() / HOUR_MS) * HOUR_MS).toISOString()

// The parts of a key never hold U+0000 (sanitized) and are never empty but for a null: joined, they cannot collide.
const keyOf = (...parts: ReadonlyArray<string | null>): string => parts.map((p) => p ?? "").join("\u0000")

/** Folds a batch into one row per key of each table (pure): what `apply` adds to the tables. */
export const rollup = (events: ReadonlyArray<StoredEvent>): Rollup => {
  const hourly = new Map<string, HourlyRow>()
  const ips = new Map<string, IpRow>()
  const spans = new Map<string, { hour: string; workspace_id: string | null; events: number; first: StoredEvent; last: StoredEvent }>()
  const names = new Map<string, NameRow>()
  let hourMs = Number.NaN
  let hour = ""
  for (const stored of events) {
    // Consecutive events mostly share their hour: its text is made once per hour, not per event.
    const ms = Math.floor(stored.recordedAt.getTime() / HOUR_MS) * HOUR_MS
    if (ms !== hourMs) {
      hourMs = ms
      hour = new Date(ms).toISOString()
    }
    const ws = stored.workspaceId
    const f = factsOf(stored)
    const hk = keyOf(hour, ws, f.type, f.outcome, f.reason, f.agentId, f.serviceId)
    const h = hourly.get(hk) ?? hourly.set(hk, {
      hour, workspace_id: ws, type: f.type, outcome: f.outcome, reason: f.reason, agent_id: f.agentId,
      service_id: f.serviceId, events: 0, count: 0, bytes: 0
    }).get(hk)!
    h.events += 1
    h.count += f.count
    h.bytes += f.bytes
    if (f.ip !== null) {
      const ik = keyOf(hour, ws, f.ip)
      const i = ips.get(ik) ??
        ips.set(ik, { hour, workspace_id: ws, ip: f.ip, masked: maskIp(f.ip), events: 0, count: 0, denied: 0 }).get(ik)!
      i.events += 1
      i.count += f.count
      if (f.outcome === "denied") i.denied += f.count
    }
    const sk = keyOf(hour, ws)
    const s = spans.get(sk)
    // Events come in position order: the first one seen is the hour's first in the batch, the last its last.
    if (s === undefined) {
      spans.set(sk, { hour, workspace_id: ws, events: 1, first: stored, last: stored })
    } else {
      s.events += 1
      s.last = stored
    }
    const named = nameOf(stored)
    if (named) names.set(keyOf(named.kind, named.id), { ...named, workspace_id: ws, position: stored.position })
  }
  return {
    hourly: [...hourly.values()],
    ips: [...ips.values()],
    spans: [...spans.values()].map(({ first, last, ...s }): SpanRow => ({
      ...s,
      first_position: first.position,
      first_at: first.recordedAt.toISOString(),
      last_position: last.position,
      last_at: last.recordedAt.toISOString()
    })),
    names: [...names.values()]
  }
}

// One statement per table and batch: the rows travel as one jsonb parameter and meet the table's key on conflict.
const UPSERT_HOURLY = `
  insert into audit_rollup_hourly as r (hour, workspace_id, type, outcome, reason, agent_id, service_id, events, count, bytes)
  select hour, workspace_id, type, outcome, reason, agent_id, service_id, events, count, bytes
    from jsonb_to_recordset($1::jsonb) as t(hour timestamptz, workspace_id uuid, type text, outcome text, reason text,
                                            agent_id text, service_id text, events bigint, count bigint, bytes bigint)
  on conflict (hour, workspace_id, type, outcome, reason, agent_id, service_id) do update
    set events = r.events + excluded.events, count = r.count + excluded.count, bytes = r.bytes + excluded.bytes`

const UPSERT_IPS = `
  insert into audit_rollup_ips as r (hour, workspace_id, ip, masked, events, count, denied)
  select hour, workspace_id, ip, masked, events, count, denied
    from jsonb_to_recordset($1::jsonb) as t(hour timestamptz, workspace_id uuid, ip text, masked text, events bigint,
                                            count bigint, denied bigint)
  on conflict (hour, workspace_id, ip) do update
    set events = r.events + excluded.events, count = r.count + excluded.count, denied = r.denied + excluded.denied`

const UPSERT_SPANS = `
  insert into audit_rollup_span as r (hour, workspace_id, events, first_position, first_at, last_position, last_at)
  select hour, workspace_id, events, first_position, first_at, last_position, last_at
    from jsonb_to_recordset($1::jsonb) as t(hour timestamptz, workspace_id uuid, events bigint, first_position bigint,
                                            first_at timestamptz, last_position bigint, last_at timestamptz)
  on conflict (hour, workspace_id) do update
    set events = r.events + excluded.events,
        first_at = case when excluded.first_position < r.first_position then excluded.first_at else r.first_at end,
        first_position = least(r.first_position, excluded.first_position),
        last_at = case when excluded.last_position > r.last_position then excluded.last_at else r.last_at end,
        last_position = greatest(r.last_position, excluded.last_position)`

const UPSERT_NAMES = `
  insert into audit_rollup_names as r (kind, id, workspace_id, name, position)
  select kind, id, workspace_id, name, position
    from jsonb_to_recordset($1::jsonb) as t(kind text, id text, workspace_id uuid, name text, position bigint)
  on conflict (kind, id) do update
    set workspace_id = excluded.workspace_id, name = excluded.name, position = excluded.position
    where excluded.position > r.position`

/** The rollup projection (async; `connect hub` follows it, `connect audit --stats` catches it up). */
export const projection: Projection<ProjectionSql> = {
  name: NAME,
  mode: "async",
  tables: TABLES,
  apply: (events) =>
    Effect.flatMap(ProjectionSql, (q) => {
      const r = rollup(events)
      const write = (text: string, rows: ReadonlyArray<unknown>) =>
        rows.length === 0 ? Effect.void : q.execute(text, [JSON.stringify(rows)])
      return Effect.all([
        write(UPSERT_HOURLY, r.hourly),
        write(UPSERT_IPS, r.ips),
        write(UPSERT_SPANS, r.spans),
        write(UPSERT_NAMES, r.names)
      ], { discard: true })
    }),
  reset: Effect.flatMap(ProjectionSql, (q) => Effect.forEach(TABLES, (table) => q.execute(`delete from ${table}`), { discard: true }))
}
