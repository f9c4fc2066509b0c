/**
 * The audit query in Postgres: the checked filters as one parameterized statement over `events`, newest first, the
 * limit applied after every filter, each filter backed by an index of migration 0010 (the bench `npm run bench --
 * audit` times them over 1,000,000 events). An agent label or a service name is first resolved to ids. A workspace
 * key's reads run under the log's row-level security (`inWorkspace`).
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect } from "effect"
import type { RawEvent } from "../core/EventLog.ts"
import { type Filters, isUuid, MAX_RESOLVED, type Resolved, SERVICE_NAME_TYPES } from "./Query.ts"


const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/**
 * Runs `effect` in a transaction as `connect_app` with `app.workspace_id = workspaceId` (both reverting at commit):
 * every statement it makes, the label look-ups included, sees only that workspace's events — Postgres's row-level
 * security on `events` (migration 0012), whatever the filters say. The twin of the hub's `Scoped.withWorkspace`
 * (audit/ does not import hub/). A malformed id is a defect.
 */
export const inWorkspace = <A, E, R>(
  workspaceId: string,
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | SqlError, R | SqlClient.SqlClient> =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => {
    if (!UUID.test(workspaceId)) return Effect.dieMessage(`inWorkspace: not a workspace id: ${workspaceId}`)
    return sql.withTransaction(
      Effect.gen(function*() {
        yield* sql.unsafe(`set local role connect_app`)
        yield* sql.unsafe(`select set_config('app.workspace_id', $1, true)`, [workspaceId])
        return yield* effect
      })
    )
  })

/** A statement and its parameters. */
export interface Statement {
  readonly text: string
  readonly params: ReadonlyArray<unknown>
}

/** The ids an agent label and a service name stand for, from the events that named them. */
export const resolve = (filters: Filters): Effect.Effect<Resolved, SqlError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const ids = (text: string, params: ReadonlyArray<unknown>) =>
      Effect.map(sql.unsafe<{ id: string }>(text, params), (rows) => rows.map((r) => r.id))
    const agentIds = filters.agent === undefined ? [] : yield* ids(
      `select distinct data->>'agentId' as id from events
       where type = 'AgentProvisioned' and data @> $1::jsonb limit ${MAX_RESOLVED}`,
      [JSON.stringify({ label: filters.agent })]
    )
    const serviceIds = filters.service === undefined || isUuid(filters.service) ? [] : yield* ids(
      `select distinct data->>'serviceId' as id from events
       where type = 'ServiceExposed' and data @> $1::jsonb limit ${MAX_RESOLVED}`,
      [JSON.stringify({ name: filters.service })]
    )
    return { agentIds, serviceIds }
  }).pipe(Effect.withSpan("Audit.resolve"))

/**
 * The statement for `filters`: every value a parameter (never spliced into the text), newest first, `limit` last.
 * `beforePosition` pages further back; `afterPosition` reads forward instead (a live tail: oldest first, after it).
 * Each condition is written as its index is (see migration 0010).
 */
export const statement = (
  filters: Filters,
  resolved: Resolved,
  beforePosition?: number,
  window?: number,
  afterPosition?: number
): Statement => {
  const params: Array<unknown> = []
  const p = (value: unknown, cast: string) => {
    params.push(value)
    return `$${params.length}::${cast}`
  }
  const json = (value: unknown) => p(JSON.stringify(value), "jsonb")
  const where: Array<string> = []
  if (beforePosition !== undefined) where.push(`position < ${p(beforePosition, "bigint")}`)
  if (afterPosition !== undefined) where.push(`position > ${p(afterPosition, "bigint")}`)
  if (window !== undefined) {
    const end = beforePosition === undefined ? "(select max(e.position) + 1 from events e)" : p(beforePosition, "bigint")
    where.push(`position >= ${end} - ${p(window, "bigint")}`)
  }
  // A time bound is also a position bound: recorded_at never decreases along the chain (the chain check refuses a row
  // recorded before its predecessor, migration 0009), so the events up to T are the positions up to the last one
  // recorded at or before T, found in the recorded_at index. Without it a backward scan by position filtered every
  // event after T: 390 ms for --until at a tenth of 1,000,000 events, 2 ms with it.
  if (filters.since) {
    const since = p(filters.since.toISOString(), "timestamptz")
    where.push(`recorded_at >= ${since}`, `position >= (select e.position from events e where e.recorded_at >= ${since}
        order by e.recorded_at, e.position limit 1)`)
  }
  if (filters.until) {
    const until = p(filters.until.toISOString(), "timestamptz")
    where.push(`recorded_at <= ${until}`, `position <= (select e.position from events e where e.recorded_at <= ${until}
        order by e.recorded_at desc, e.position desc limit 1)`)
  }
  if (filters.types) where.push(`type = any(${p(filters.types, "text[]")})`)
  if (filters.workspace) where.push(`workspace_id = ${p(filters.workspace, "uuid")}`)
  if (filters.agent !== undefined) {
    const ids = [...new Set([...(isUuid(filters.agent) ? [filters.agent] : []), ...resolved.agentIds])]
    const any = ids.flatMap((id) => [
      `data @> ${json({ agentId: id })}`,
      `data @> ${json({ fromAgentId: id })}`,
      `data @> ${json({ toAgentId: id })}`,
      `(meta->'actor'->>'id' = ${p(id, "text")} and meta->'actor'->>'kind' = 'agent')`
    ])
    where.push(any.length === 0 ? "false" : `(${any.join(" or ")})`)
  }
  if (filters.service !== undefined) {
    const service = filters.service
    const ids = isUuid(service) ? [service] : resolved.serviceIds
    const any = ids.flatMap((id) => [`data @> ${json({ serviceId: id })}`, `data @> ${json({ services: [{ serviceId: id }] })}`])
    if (!isUuid(service)) {
      any.push(
        `(type = any(${p(SERVICE_NAME_TYPES, "text[]")}) and data @> ${json({ name: service })})`,
        `data @> ${json({ serviceName: service })}`,
        `data @> ${json({ requestedName: service })}`,
        `data @> ${json({ services: [{ name: service }] })}`
      )
    }
    where.push(`(${any.join(" or ")})`)
  }
  if (filters.outcome === "denied") where.push(`connect_audit_denied(type, data)`)
  if (filters.outcome === "allowed") where.push(`not connect_audit_denied(type, data)`)
  if (filters.ip) where.push(`connect_audit_source_ip(data, meta) <<= ${p(`${filters.ip.address}/${filters.ip.bits}`, "inet")}`)
  const text = `select position::text, id::text, stream, version, workspace_id::text, type, data::text, meta::text,
      (extract(epoch from recorded_at) * 1000)::bigint::text as recorded_ms, encode(prev_hash, 'hex') as prev_hash,
      encode(hash, 'hex') as hash
    from events ${where.length > 0 ? `where ${where.join("\n      and ")}` : ""}
    order by events.position ${afterPosition === undefined ? "desc" : "asc"} limit ${p(filters.limit, "int")}`
  return { text, params }
}

/** A row of `COLUMNS`. */
export interface Row {
  readonly position: string
  readonly id: string
  readonly stream: string
  readonly version: number
  readonly workspace_id: string | null
  readonly type: string
  readonly data: string
  readonly meta: string
  readonly recorded_ms: string
  readonly prev_hash: string
  readonly hash: string
}

/** How many of the newest positions an address range is first looked for in (see `query`). */
const RECENT_WINDOW = 5_000

/** Whether `--ip` names a range rather than one address. */
const isRange = (filters: Filters): boolean =>
  filters.ip !== undefined && filters.ip.bits < (filters.ip.family === "ipv6" ? 128 : 32)

/**
 * The events before `beforePosition` (default: all) that pass `filters`, newest first, at most `filters.limit`; with
 * `afterPosition`, those after it instead, oldest first (a live tail).
 */
export const query = (
  filters: Filters,
  resolved: Resolved,
  beforePosition?: number,
  afterPosition?: number
): Effect.Effect<ReadonlyArray<RawEvent>, SqlError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const run = ({ params, text }: Statement) => sql.unsafe<Row>(text, params)
    if (afterPosition !== undefined) {
      // Forward from a recent position: the primary key bounds the scan to the positions since, whatever the filters.
      return (yield* run(statement(filters, resolved, beforePosition, undefined, afterPosition))).map(rawOf)
    }
    // connect_audit_source_ip is parallel restricted (migration 0014): a parallel plan evaluates it in the leader.
    // An address range is read in two steps. Its index yields matches by address, so newest first means reading and
    // sorting all of them (62,500 rows and 509 ms for a busy /24 over 1,000,000 events); the newest 5,000 positions
    // are searched first (about 13 ms when none of them matches), and only when they hold fewer than the limit is the
    // whole log, which stays slow for a busy range seen only long ago.
    const probe = isRange(filters) ? yield* run(statement(filters, resolved, beforePosition, RECENT_WINDOW)) : undefined
    const rows = probe !== undefined && probe.length >= filters.limit
      ? probe
      : yield* run(statement(filters, resolved, beforePosition))
    return rows.map(rawOf)
  }).pipe(Effect.withSpan("Audit.query"))

/** The columns `rawOf` reads, as a select list over `events`. */
export const COLUMNS = `position::text, id::text, stream, version, workspace_id::text, type, data::text, meta::text,
      (extract(epoch from recorded_at) * 1000)::bigint::text as recorded_ms, encode(prev_hash, 'hex') as prev_hash,
      encode(hash, 'hex') as hash`

/** A row as the log's raw event. */
export const rawOf = (r: Row): RawEvent => ({
  position: Number(r.position),
  id: r.id,
  stream: r.stream,
  version: Number(r.version),
  workspaceId: r.workspace_id,
  type: r.type,
  dataJson: r.data,
  metaJson: r.meta,
  recordedAt: new Date(Number(r.recorded_ms)),
  prevHash: Buffer.from(r.prev_hash, "hex"),
  hash: Buffer.from(r.hash, "hex")
})
