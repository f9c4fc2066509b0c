/**
 * The `--stats` query in Postgres: a handful of small aggregates over the rollup tables of migration 0011 (never over
 * `events`, but for the two rows of the first and last event), all read in one repeatable-read transaction with the
 * projection's checkpoint, so the answer is exactly the log up to that position; for a workspace's API key under the
 * row-level security of `connect_app`.
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect } from "effect"
import type { AddressRow, AgentRow, DayRow, DenialRow, EventRef, HourRow, ServiceRow, Stats, StatsOptions, TypeRow } from "./Stats.ts"
import { isUuid } from "./Query.ts"
import { HOUR_MS, hourOf, NAME } from "./StatsProjection.ts"

const DAY_MS = 86_400_000

/** Rows of each list when it is not the `--by` one. */
export const SECTION_ROWS = 10

/** The window in whole UTC hours: from the hour of `since`, to the end of the hour of `until`. */
export const windowOf = (options: StatsOptions): { readonly from: string | null; readonly to: string | null } => ({
  from: options.since ? hourOf(options.since) : null,
  to: options.until ? new Date(Date.parse(hourOf(options.until)) + HOUR_MS).toISOString() : null
})

/** Every UTC day from `first` to `last` (YYYY-MM-DD), with the events of those that have any. */
export const fillDays = (counts: ReadonlyArray<DayRow>, first: string | undefined, last: string | undefined): Array<DayRow> => {
  if (first === undefined || last === undefined) return [...counts]
  const byDay = new Map(counts.map((c) => [c.day, c.events]))
  const out: Array<DayRow> = []
  for (let t = Date.parse(first); t <= Date.parse(last); t += DAY_MS) {
    const day = new Date(t).toISOString().slice(0, 10)
    out.push({ day, events: byDay.get(day) ?? 0 })
  }
  return out
}

/** Most hours `--by hour` lists: a year's (the latest of a longer window). */
export const MAX_HOURS = 366 * 24

/** Every UTC hour from `first` to `last` (`YYYY-MM-DDTHH`), with the events of those that have any; the latest `MAX_HOURS`. */
export const fillHours = (counts: ReadonlyArray<HourRow>, first: string | undefined, last: string | undefined): Array<HourRow> => {
  if (first === undefined || last === undefined) return [...counts].slice(-MAX_HOURS)
  const byHour = new Map(counts.map((c) => [c.hour, c.events]))
  const out: Array<HourRow> = []
  const end = Date.parse(`${last}:00:00Z`)
  for (let t = Math.max(Date.parse(`${first}:00:00Z`), end - (MAX_HOURS - 1) * HOUR_MS); t <= end; t += HOUR_MS) {
    const hour = new Date(t).toISOString().slice(0, 13)
    out.push({ hour, events: byHour.get(hour) ?? 0 })
  }
  return out
}

/**
 * Reads the stats for `options` from the rollups as they are (catch them up first: see Stats.catchUp), in one
 * repeatable-read snapshot, so that the tables are exactly the log up to the checkpoint read with them.
 */
export const query = (options: StatsOptions): Effect.Effect<Stats, SqlError, SqlClient.SqlClient> =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.withTransaction(
      // Before any read: the checkpoint and the tables are then one snapshot.
      Effect.zipRight(sql.unsafe(`set transaction isolation level repeatable read, read only`), read(options))
    )).pipe(Effect.withSpan("Audit.stats"))

/**
 * `query` for a workspace's API key: the checkpoint read as the hub's role (connect_app reads none), then every rollup
 * and event as `connect_app` with `app.workspace_id` set, in the same snapshot — row-level security decides what is
 * counted, whatever `options` say. Role and setting revert at commit. A malformed id is a defect.
 */
export const queryInWorkspace = (
  workspaceId: string,
  options: StatsOptions
): Effect.Effect<Stats, SqlError, SqlClient.SqlClient> =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => {
    if (!isUuid(workspaceId)) return Effect.dieMessage(`queryInWorkspace: not a workspace id: ${workspaceId}`)
    return sql.withTransaction(
      Effect.gen(function*() {
        yield* sql.unsafe(`set transaction isolation level repeatable read, read only`)
        const asOf = yield* checkpoint
        yield* sql.unsafe(`set local role connect_app`)
        yield* sql.unsafe(`select set_config('app.workspace_id', $1, true)`, [workspaceId])
        return yield* readAt(options, asOf)
      })
    )
  }).pipe(Effect.withSpan("Audit.statsInWorkspace"))

/** The position the rollups reflect (0 before the first batch). */
const checkpoint: Effect.Effect<number, SqlError, SqlClient.SqlClient> = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.map(
    sql.unsafe<{ position: number }>(`select position from projection_checkpoints where name = $1`, [NAME]),
    ([row]) => (row ? Number(row.position) : 0)
  ))

/** The reads of `query`, in the caller's transaction (which should be one snapshot). */
export const read = (options: StatsOptions): Effect.Effect<Stats, SqlError, SqlClient.SqlClient> =>
  Effect.flatMap(checkpoint, (asOf) => readAt(options, asOf))

/** The rollup reads for `options`, the checkpoint `asOf` read already in the same snapshot. */
const readAt = (options: StatsOptions, asOf: number): Effect.Effect<Stats, SqlError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const { from, to } = windowOf(options)
    const params = [from, to, options.workspace ?? null]
    const where = `($1::timestamptz is null or hour >= $1) and ($2::timestamptz is null or hour < $2)
      and ($3::uuid is null or workspace_id = $3)`
    const rows = <A extends object>(text: string, extra: ReadonlyArray<unknown> = []) =>
      sql.unsafe<A>(text, [...params, ...extra])
    const limitOf = (section: StatsOptions["by"]) => (options.by === section ? options.limit : SECTION_ROWS)

    const [span] = yield* rows<{ events: number | null; first: number | null; last: number | null }>(
      `select sum(events)::bigint as events, min(first_position) as first, max(last_position) as last
         from audit_rollup_span where ${where}`
    )
    const ends = [span?.first, span?.last].filter((p): p is number => typeof p === "number")
    const refs = yield* sql.unsafe<{ position: number; at: Date; type: string }>(
      `select position, recorded_at as at, type from events where position = any($1::bigint[])`,
      [ends]
    )
    const refOf = (position: number | null | undefined): EventRef | null => {
      const r = refs.find((x) => Number(x.position) === position)
      return r ? { position: Number(r.position), at: new Date(r.at).toISOString(), type: r.type } : null
    }
    const byType = yield* rows<TypeRow>(
      `select type, outcome, sum(events)::bigint as events, sum(count)::bigint as count
         from audit_rollup_hourly where ${where}
        group by type, outcome order by sum(events) desc, type, outcome`
    )
    const denials = yield* rows<DenialRow>(
      `select type, reason, sum(count)::bigint as count, sum(events)::bigint as events
         from audit_rollup_hourly where ${where} and outcome = 'denied'
        group by type, reason order by sum(count) desc, type, reason limit $4`,
      [limitOf("type")]
    )
    const services = yield* rows<ServiceRow>(
      `select s.id, n.name, s.tunnels, s.bytes, s.denied, s.events from (
         select service_id as id,
                coalesce(sum(events) filter (where type = 'TunnelOpened'), 0)::bigint as tunnels,
                coalesce(sum(bytes) filter (where type = 'TunnelClosed'), 0)::bigint as bytes,
                coalesce(sum(count) filter (where outcome = 'denied'), 0)::bigint as denied,
                sum(events)::bigint as events
           from audit_rollup_hourly where ${where} and service_id is not null
          group by service_id order by bytes desc, tunnels desc, events desc, service_id limit $4) s
         left join audit_rollup_names n on n.kind = 'service' and n.id = s.id
        order by s.bytes desc, s.tunnels desc, s.events desc, s.id`,
      [limitOf("service")]
    )
    const agents = yield* rows<AgentRow>(
      `select a.id, n.name as label, a.events, a.tunnels, a.bytes, a.denied, a.rotations, a."ipChanges" from (
         select agent_id as id, sum(events)::bigint as events,
                coalesce(sum(events) filter (where type = 'TunnelOpened'), 0)::bigint as tunnels,
                coalesce(sum(bytes) filter (where type = 'TunnelClosed'), 0)::bigint as bytes,
                coalesce(sum(count) filter (where outcome = 'denied'), 0)::bigint as denied,
                coalesce(sum(events) filter (where type = 'AgentTokenRotated'), 0)::bigint as rotations,
                coalesce(sum(events) filter (where type = 'AgentIpChanged'), 0)::bigint as "ipChanges"
           from audit_rollup_hourly where ${where} and agent_id is not null
          group by agent_id order by events desc, agent_id limit $4) a
         left join audit_rollup_names n on n.kind = 'agent' and n.id = a.id
        order by a.events desc, a.id`,
      [limitOf("agent")]
    )
    const address = options.reveal ? "ip" : "masked"
    const addresses = yield* rows<AddressRow>(
      `select ${address} as address, sum(count)::bigint as count, sum(events)::bigint as events,
              sum(denied)::bigint as denied
         from audit_rollup_ips where ${where}
        group by ${address} order by sum(count) desc, ${address} limit $4`,
      [limitOf("ip")]
    )
    const days = yield* rows<{ day: string; events: number }>(
      `select to_char(date_trunc('day', hour, 'UTC') at time zone 'UTC', 'YYYY-MM-DD') as day,
              sum(events)::bigint as events
         from audit_rollup_span where ${where} group by 1 order by 1`
    )
    const hours = options.by !== "hour" ? undefined : yield* rows<{ hour: string; events: number }>(
      `select to_char(hour at time zone 'UTC', 'YYYY-MM-DD"T"HH24') as hour, sum(events)::bigint as events
         from audit_rollup_span where ${where} group by 1 order by 1`
    )
    const total = (type: string) => byType.filter((r) => r.type === type).reduce((n, r) => n + Number(r.events), 0)
    const first = refOf(span?.first)
    const last = refOf(span?.last)
    const toDay = to === null ? undefined : new Date(Date.parse(to) - 1).toISOString().slice(0, 10)
    return {
      asOf,
      from,
      to,
      workspace: options.workspace ?? null,
      events: Number(span?.events ?? 0),
      first,
      last,
      byType: byType.map((r) => ({ ...r, events: Number(r.events), count: Number(r.count) })),
      denials: denials.map((r) => ({ ...r, count: Number(r.count), events: Number(r.events) })),
      services: services.map((r) => ({
        ...r, tunnels: Number(r.tunnels), bytes: Number(r.bytes), denied: Number(r.denied), events: Number(r.events)
      })),
      agents: agents.map((r) => ({
        ...r, events: Number(r.events), tunnels: Number(r.tunnels), bytes: Number(r.bytes), denied: Number(r.denied),
        rotations: Number(r.rotations), ipChanges: Number(r.ipChanges)
      })),
      addresses: addresses.map((r) => ({ ...r, count: Number(r.count), events: Number(r.events), denied: Number(r.denied) })),
      masked: !options.reveal,
      rotations: total("AgentTokenRotated"),
      ipChanges: total("AgentIpChanged"),
      days: fillDays(
        days.map((d) => ({ day: d.day, events: Number(d.events) })),
        from?.slice(0, 10) ?? days[0]?.day,
        // Never past today: an --until in the future adds no empty days.
        [toDay ?? last?.at.slice(0, 10) ?? days[days.length - 1]?.day, new Date().toISOString().slice(0, 10)]
          .filter((d): d is string => d !== undefined).sort()[0]
      ),
      ...(hours === undefined ? {} : {
        hours: fillHours(
          hours.map((h) => ({ hour: h.hour, events: Number(h.events) })),
          from?.slice(0, 13) ?? hours[0]?.hour,
          // Never past this hour, as for days.
          [toDay === undefined ? last?.at.slice(0, 13) ?? hours[hours.length - 1]?.hour : new Date(Date.parse(to!) - 1).toISOString().slice(0, 13), new Date().toISOString().slice(0, 13)]
            .filter((h): h is string => h !== undefined).sort()[0]
        )
      })
    } satisfies Stats
  })
