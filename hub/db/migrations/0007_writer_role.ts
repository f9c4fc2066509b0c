/**
 * Migration 0007: the hub's runtime role `connect_writer`: INSERT and SELECT on events, read-write on the read models
 * and checkpoints.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe(`
      -- The hub runs as a member of connect_writer, which may append to and read events and nothing more: the owner
      -- (who runs these migrations) keeps ALTER, DROP and trigger control, so the hub's role cannot disable the
      -- append-only triggers, delete or truncate. Read models and checkpoints are the hub's to rewrite (they are
      -- projections of the log, rebuilt from it). Creation tolerates the race as 0004 does.
      do $$
      begin
        if not exists (select from pg_roles where rolname = 'connect_writer') then
          begin
            create role connect_writer nologin;
          exception when duplicate_object or unique_violation then null;
          end;
        end if;
        execute format('grant usage on schema %I to connect_writer', current_schema());
        -- Tables of later migrations are read models unless they say otherwise: the writer may change them.
        execute format('alter default privileges in schema %I grant select, insert, update, delete on tables to connect_writer',
          current_schema());
      end
      $$;
      revoke all on events from connect_writer;
      grant select, insert on events to connect_writer;
      grant select, insert, update, delete on projection_checkpoints, stream_heads, workspaces, api_keys, agents, services
        to connect_writer;
      grant select on connect_migrations to connect_writer;
      -- Workspace-scoped reads switch to connect_app (Scoped.ts).
      grant connect_app to connect_writer;
      create policy hub_writer on workspaces to connect_writer using (true) with check (true);
      create policy hub_writer on api_keys to connect_writer using (true) with check (true);
      create policy hub_writer on agents to connect_writer using (true) with check (true);
      create policy hub_writer on services to connect_writer using (true) with check (true);
    `)
})
