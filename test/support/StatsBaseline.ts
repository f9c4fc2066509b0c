/**
 * The rollups of `connect audit --stats` computed the slow way: views named like the rollup tables (and the checkpoint
 * table) in a schema of their own, each a GROUP BY over `events` written from the rule of audit/StatsProjection.ts in
 * SQL. A transaction whose search path starts with that schema runs the very statements of audit/PgStats.ts over
 * `events` instead of the rollups: the equality tests compare both answers, the bench times both.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { eventTypes } from "../../core/Events.ts"
import * as PgStats from "../../audit/PgStats.ts"
import type { StatsOptions } from "../../audit/Stats.ts"
import { COALESCED, NAME } from "../../audit/StatsProjection.ts"

/** The schema of the baseline views. */
export const SCHEMA = "stats_baseline"

const list = (xs: ReadonlyArray<string>) => xs.map((x) => `'${x}'`).join(", ")

// What each event contributes, as factsOf decides it; hostile-length text is not in the generated logs.
const FACTS = `
  select position, recorded_at, date_trunc('hour', recorded_at, 'UTC') as hour, workspace_id, type,
         known, denied, case when denied then 'denied' else 'allowed' end as outcome,
         case when denied then nullif(data->>'reason', '') end as reason,
         case when known then coalesce(nullif(data->>'agentId', ''), nullif(data->>'fromAgentId', ''),
           case when meta->'actor'->>'kind' = 'agent' then nullif(meta->'actor'->>'id', '') end) end as agent_id,
         case when known then nullif(data->>'serviceId', '') end as service_id,
         case when type = 'ReachDenied' and workspace_id is null and data->>'reason' = 'cross_workspace' then 0
              when type in (${list(COALESCED)}) then coalesce((data->>'count')::bigint, 1) else 1 end as n,
         case when type = 'TunnelClosed' then (data->>'bytesUp')::bigint + (data->>'bytesDown')::bigint
              when type = 'LinkAccessed' then (data->>'bytes')::bigint else 0 end as bytes,
         coalesce(nullif(meta->>'sourceIp', ''),
           case when known then coalesce(nullif(data->>'ip', ''), nullif(data->>'newIp', '')) end) as ip,
         data
    from (select e.*, e.type in (${list(eventTypes)}) as known,
                 e.type in (${list(eventTypes)}) and connect_audit_denied(e.type, e.data) as denied
            from public.events e) e`

/** Creates (or replaces) the baseline views; run as a role that may create schemas. */
export const create = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe(`drop schema if exists ${SCHEMA} cascade`)
  yield* sql.unsafe(`create schema ${SCHEMA}`)
  yield* sql.unsafe(`create view ${SCHEMA}.facts as ${FACTS}`)
  yield* sql.unsafe(`
    create view ${SCHEMA}.audit_rollup_hourly as
      select hour, workspace_id, type, outcome, reason, agent_id, service_id,
             count(*)::bigint as events, sum(n)::bigint as count, sum(bytes)::bigint as bytes
        from ${SCHEMA}.facts group by hour, workspace_id, type, outcome, reason, agent_id, service_id`)
  // Masked as core/Mask.ts does for the addresses the generated logs hold (IPv4, IPv6 with a non-zero third group).
  yield* sql.unsafe(`
    create view ${SCHEMA}.audit_rollup_ips as
      select hour, workspace_id, ip,
             case when ip ~ '^\\d+\\.\\d+\\.\\d+\\.\\d+$' then regexp_replace(ip, '\\.\\d+$', '.x')
                  when ip ~ ':' then network(set_masklen(ip::inet, 48))::text
                  else '(not an address)' end as masked,
             count(*)::bigint as events, sum(n)::bigint as count, coalesce(sum(n) filter (where denied), 0)::bigint as denied
        from ${SCHEMA}.facts where ip is not null group by hour, workspace_id, ip`)
  yield* sql.unsafe(`
    create view ${SCHEMA}.audit_rollup_span as
      select hour, workspace_id, count(*)::bigint as events, min(position) as first_position,
             (array_agg(recorded_at order by position))[1] as first_at, max(position) as last_position,
             (array_agg(recorded_at order by position desc))[1] as last_at
        from ${SCHEMA}.facts group by hour, workspace_id`)
  yield* sql.unsafe(`
    create view ${SCHEMA}.audit_rollup_names as
      select distinct on (kind, id) kind, id, workspace_id, name, position from (
        select 'agent' as kind, data->>'agentId' as id, workspace_id, data->>'label' as name, position
          from public.events where type = 'AgentProvisioned'
        union all
        select 'service', data->>'serviceId', workspace_id, data->>'name', position
          from public.events where type = 'ServiceExposed'
        union all
        select 'service', data->>'serviceId', workspace_id, data->>'serviceName', position
          from public.events where type = 'TunnelOpened') n
       order by kind, id, position desc`)
  yield* sql.unsafe(`
    create view ${SCHEMA}.projection_checkpoints as
      select '${NAME}'::text as name, coalesce(max(position), 0)::bigint as position from public.events`)
})

/**
 * Runs `effect` in one repeatable-read transaction whose search path starts with the baseline schema: the unqualified
 * rollup names it uses are the views over `events`.
 */
export const within = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.withTransaction(
      sql.unsafe(`set transaction isolation level repeatable read, read only`).pipe(
        Effect.zipRight(sql.unsafe(`select set_config('search_path', $1, true)`, [`${SCHEMA}, public`])),
        Effect.zipRight(effect)
      )
    ))

/** The stats of `options` computed by PgStats' own statements over the baseline views: GROUP BYs over `events`. */
export const query = (options: StatsOptions) => within(PgStats.read(options))
