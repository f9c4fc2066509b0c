/**
 * Migration 0011: the rollup tables of `connect audit --stats` (audit/StatsProjection.ts, an async projection): events
 * per hour by workspace, type, outcome, denial reason, agent and service; source addresses per hour; the first and last
 * position of each hour; the latest name of each agent and service. Read-write for the hub's role (it follows the
 * log into them), readable per workspace by connect_app, as the core read models are.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

const TABLES = ["audit_rollup_hourly", "audit_rollup_ips", "audit_rollup_span", "audit_rollup_names"]

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe(`
      -- Keys hold nulls (no workspace, no agent, no reason), which must still meet on conflict: NULLS NOT DISTINCT.
      -- Hours are UTC; counts are bigint sums. The key's index leads with the hour, which every --stats query ranges on.
      create table audit_rollup_hourly (
        hour         timestamptz not null,
        workspace_id uuid,
        type         text not null,
        outcome      text not null,
        reason       text,
        agent_id     text,
        service_id   text,
        events       bigint not null,
        count        bigint not null,
        bytes        bigint not null,
        constraint audit_rollup_hourly_key
          unique nulls not distinct (hour, workspace_id, type, outcome, reason, agent_id, service_id)
      );
      create table audit_rollup_ips (
        hour         timestamptz not null,
        workspace_id uuid,
        ip           text not null,
        masked       text not null,
        events       bigint not null,
        count        bigint not null,
        denied       bigint not null,
        constraint audit_rollup_ips_key unique nulls not distinct (hour, workspace_id, ip)
      );
      create table audit_rollup_span (
        hour           timestamptz not null,
        workspace_id   uuid,
        events         bigint not null,
        first_position bigint not null,
        first_at       timestamptz not null,
        last_position  bigint not null,
        last_at        timestamptz not null,
        constraint audit_rollup_span_key unique nulls not distinct (hour, workspace_id)
      );
      create table audit_rollup_names (
        kind         text not null,
        id           text not null,
        workspace_id uuid,
        name         text not null,
        position     bigint not null,
        primary key (kind, id)
      );
    `)
  for (const table of TABLES) {
    yield* sql.unsafe(`
      grant select, insert, update, delete on ${table} to connect_writer;
      grant select on ${table} to connect_app;
      alter table ${table} enable row level security;
      alter table ${table} force row level security;
      create policy workspace_isolation on ${table} to connect_app
        using (workspace_id = nullif(current_setting('app.workspace_id', true), '')::uuid);
      create policy hub_writer on ${table} to connect_writer using (true) with check (true);
      -- FORCE subjects the owner too; a rebuild writes as the owner, which sees every workspace.
      create policy hub_projections on ${table} to current_user using (true) with check (true);
    `)
  }
})
