/**
 * Migration 0004: the core read models (workspaces, api keys, agents, services), the `connect_app` role that sees one
 * workspace's rows through row-level security, and the credential lookups that run before the workspace is known.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe(`
      create table workspaces (
        id         uuid primary key,
        name       text not null,
        created_at timestamptz not null
      );
      create table api_keys (
        id           uuid primary key,
        workspace_id uuid not null,
        name         text not null,
        prefix       text not null,
        key_hash     text not null unique,
        created_at   timestamptz not null,
        revoked_at   timestamptz
      );
      create table agents (
        id                     uuid primary key,
        workspace_id           uuid not null,
        label                  text not null,
        token_hash             text not null,
        token_expires_at       timestamptz not null,
        prev_token_hash        text,
        prev_token_valid_until timestamptz,
        revoked_at             timestamptz,
        last_ip                text,
        connected              boolean not null default false,
        connected_at           timestamptz,
        created_at             timestamptz not null
      );
      create index agents_workspace on agents (workspace_id);
      create index agents_token_hash on agents (token_hash);
      create index agents_prev_token_hash on agents (prev_token_hash) where prev_token_hash is not null;
      create table services (
        id           uuid primary key,
        workspace_id uuid not null,
        agent_id     uuid not null,
        name         text not null,
        target_host  text not null,
        target_port  integer not null,
        exposed      boolean not null,
        updated_at   timestamptz not null,
        unique (workspace_id, name)
      );

      -- Reads on behalf of a workspace run as connect_app, which sees only that workspace's rows. Roles are
      -- cluster-wide and several databases may migrate at once, so creation tolerates losing the race.
      do $$
      begin
        if not exists (select from pg_roles where rolname = 'connect_app') then
          begin
            create role connect_app nologin;
          exception when duplicate_object or unique_violation then null;
          end;
        end if;
        if not pg_has_role(current_user, 'connect_app', 'member') then
          execute format('grant connect_app to %I', current_user);
        end if;
        execute format('grant usage on schema %I to connect_app', current_schema());
      end
      $$;
      grant select on workspaces, api_keys, agents, services to connect_app;

      alter table workspaces enable row level security;
      alter table workspaces force row level security;
      create policy workspace_isolation on workspaces to connect_app
        using (id = nullif(current_setting('app.workspace_id', true), '')::uuid);
      alter table api_keys enable row level security;
      alter table api_keys force row level security;
      create policy workspace_isolation on api_keys to connect_app
        using (workspace_id = nullif(current_setting('app.workspace_id', true), '')::uuid);
      alter table agents enable row level security;
      alter table agents force row level security;
      create policy workspace_isolation on agents to connect_app
        using (workspace_id = nullif(current_setting('app.workspace_id', true), '')::uuid);
      alter table services enable row level security;
      alter table services force row level security;
      create policy workspace_isolation on services to connect_app
        using (workspace_id = nullif(current_setting('app.workspace_id', true), '')::uuid);
      -- FORCE makes the owner subject to policies too; the projections write as the owner (the hub's role), which
      -- sees every workspace. A superuser bypasses all of this anyway.
      create policy hub_projections on workspaces to current_user using (true) with check (true);
      create policy hub_projections on api_keys to current_user using (true) with check (true);
      create policy hub_projections on agents to current_user using (true) with check (true);
      create policy hub_projections on services to current_user using (true) with check (true);

      -- Credential lookups happen before the workspace is known: these return only the row the secret's hash matches.
      create function connect_agent_by_token(hash text) returns setof agents
        language sql stable security definer set search_path from current as $$
        select * from agents where token_hash = hash or prev_token_hash = hash
      $$;
      create function connect_api_key_by_hash(hash text) returns setof api_keys
        language sql stable security definer set search_path from current as $$
        select * from api_keys where key_hash = hash
      $$;
      revoke all on function connect_agent_by_token(text), connect_api_key_by_hash(text) from public;
      grant execute on function connect_agent_by_token(text), connect_api_key_by_hash(text) to connect_app;
    `)
})
