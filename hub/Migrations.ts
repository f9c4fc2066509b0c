/**
 * The hub's database schema as numbered migrations run through @effect/sql's Migrator: the append-only `events`
 * table with its triggers, projection checkpoints, the read models of the core projections, and the grants of the
 * hub's runtime role (`connect_writer`). Migrations run as the owner role; the hub runs as a member of connect_writer.
 */
import * as Migrator from "@effect/sql/Migrator"
import { SqlClient } from "@effect/sql"
import { Effect, Layer, Schedule } from "effect"

const migrations: Record<string, Effect.Effect<void, unknown, SqlClient.SqlClient>> = {
  "0001_events": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql.unsafe(`
      create table events (
        position     bigint primary key check (position > 0),
        id           uuid not null unique,
        stream       text not null,
        version      integer not null check (version > 0),
        workspace_id uuid,
        type         text not null,
        data         jsonb not null,
        meta         jsonb not null,
        recorded_at  timestamptz not null default clock_timestamp(),
        prev_hash    bytea not null check (octet_length(prev_hash) = 32),
        hash         bytea not null check (octet_length(hash) = 32),
        unique (stream, version)
      );
      create index events_workspace_position on events (workspace_id, position);

      -- Append-only is the database's promise, not the application's: whoever connects, rows never change.
      create function events_append_only() returns trigger language plpgsql as $$
      begin
        raise exception 'events is append-only: % is not allowed', tg_op using errcode = 'restrict_violation';
      end
      $$;
      create trigger events_no_update_delete before update or delete on events
        for each row execute function events_append_only();
      create trigger events_no_truncate before truncate on events
        for each statement execute function events_append_only();

      create table projection_checkpoints (
        name     text primary key,
        position bigint not null
      );
    `)
  }),
  "0002_stream_heads": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql.unsafe(`
      create table stream_heads (
        stream        text primary key,
        workspace_id  uuid,
        version       integer not null,
        last_position bigint not null,
        last_type     text not null,
        event_count   integer not null,
        updated_at    timestamptz not null
      );
    `)
  }),
  "0003_append_head": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql.unsafe(`
      -- Takes the append lock, then reads the head and the given streams' versions. In one round trip, and correct:
      -- a volatile function takes a new snapshot for each statement, so the reads see every append committed before
      -- the lock was granted (a single SQL statement would read from a snapshot taken before it waited).
      create function connect_append_head(lock_key bigint, streams text[])
        returns table (stream text, version bigint, hash bytea, now timestamptz)
        language plpgsql volatile as $$
      begin
        perform pg_advisory_xact_lock(lock_key);
        return query
          select null::text, h.position, h.hash, date_trunc('milliseconds', clock_timestamp())
            from (select 1) one left join lateral (select e.position, e.hash from events e order by e.position desc limit 1) h on true
          union all
          select s, (select e.version from events e where e.stream = s order by e.version desc limit 1)::bigint, null, null
            from unnest(streams) s;
      end
      $$;
    `)
  }),
  "0004_read_models": Effect.gen(function* () {
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
  }),
  "0005_agent_allow_list": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    // The targets an admin lets an agent expose (AgentAllowListSet); null: anything but cloud metadata addresses.
    yield* sql.unsafe(`alter table agents add column expose_allow text[]`)
  }),
  "0006_chain_check": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql.unsafe(`
      -- The chain hash of a row as verify computes it (PgEventLog's checkChain): sha256(prev_hash || canonical(row)),
      -- the canonical text being core/HashChain's canonicalText built in SQL. A plain SQL function without SET
      -- clauses, so a query that calls it gets the expression inlined. (Parameters are prefixed: position is a keyword.)
      create function connect_event_hash(
        p_prev_hash bytea, p_position bigint, p_id uuid, p_stream text, p_version integer, p_workspace_id uuid,
        p_type text, p_data jsonb, p_meta jsonb, p_recorded_at timestamptz
      ) returns bytea language sql stable parallel safe as $$
        select pg_catalog.sha256(p_prev_hash || pg_catalog.convert_to(
          '[' || p_position || ',' || to_json(p_id::text)::text || ',' || to_json(p_stream)::text || ',' || p_version
          || ',' || coalesce(to_json(p_workspace_id::text)::text, 'null') || ',' || to_json(p_type)::text || ','
          || p_data::text || ',' || p_meta::text || ',' || (extract(epoch from p_recorded_at) * 1000)::bigint
          || ']', 'UTF8'))
      $$;

      -- No input can store a row that verify would report: each row must follow the stored head (no gap), link to
      -- its stored hash, and carry the hash of its stored values. Rows of one multi-row insert are checked in order
      -- (a volatile trigger sees the rows the statement inserted before it). Messages name positions only: the
      -- server log must not hold event contents.
      create function events_check_chain() returns trigger language plpgsql as $$
      declare
        expected bytea;
      begin
        if new.position = 1 then
          expected := decode(repeat('00', 32), 'hex');
        else
          select e.hash into expected from events e where e.position = new.position - 1;
          if not found then
            raise exception 'events: position % does not follow the head (position % is missing)',
              new.position, new.position - 1 using errcode = 'check_violation';
          end if;
        end if;
        if new.prev_hash is distinct from expected then
          raise exception 'events: prev_hash of position % is not the hash of position %', new.position, new.position - 1
            using errcode = 'check_violation';
        end if;
        if new.hash is distinct from connect_event_hash(new.prev_hash, new.position, new.id, new.stream, new.version,
            new.workspace_id, new.type, new.data, new.meta, new.recorded_at) then
          raise exception 'events: hash of position % is not sha256(prev_hash || canonical(row)) of the stored values',
            new.position using errcode = 'check_violation';
        end if;
        return new;
      end
      $$;
      create trigger events_check_chain before insert on events
        for each row execute function events_check_chain();
    `)
  }),
  "0007_writer_role": Effect.gen(function* () {
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
  }),
  "0008_shadow_rebuild": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql.unsafe(`
      -- A rebuild replays the log into shadow copies of a projection's tables in this schema (found first on its
      -- search path), then swaps them in (ProjectionRunner.rebuild). Only the owner creates here: the hub's role cannot.
      -- Created now only by a role that may create schemas in this database; otherwise by the first rebuild, run by an
      -- owner that may (a hub whose role owns its tables but not the database must still start).
      do $$ begin
        if has_database_privilege(current_user, current_database(), 'CREATE') then
          create schema if not exists connect_rebuild;
        end if;
      end $$;

      -- The credential lookups returned "setof agents" / "setof api_keys", which ties them to the tables' row types so
      -- that a table could never be replaced; they now name their columns (same names, same order).
      drop function connect_agent_by_token(text);
      drop function connect_api_key_by_hash(text);
      create function connect_agent_by_token(hash text) returns table (
        id uuid, workspace_id uuid, label text, token_hash text, token_expires_at timestamptz, prev_token_hash text,
        prev_token_valid_until timestamptz, revoked_at timestamptz, last_ip text, connected boolean,
        connected_at timestamptz, created_at timestamptz, expose_allow text[]
      ) language sql stable security definer set search_path from current as $$
        select a.id, a.workspace_id, a.label, a.token_hash, a.token_expires_at, a.prev_token_hash,
               a.prev_token_valid_until, a.revoked_at, a.last_ip, a.connected, a.connected_at, a.created_at, a.expose_allow
          from agents a where a.token_hash = hash or a.prev_token_hash = hash
      $$;
      create function connect_api_key_by_hash(hash text) returns table (
        id uuid, workspace_id uuid, name text, prefix text, key_hash text, created_at timestamptz, revoked_at timestamptz
      ) language sql stable security definer set search_path from current as $$
        select k.id, k.workspace_id, k.name, k.prefix, k.key_hash, k.created_at, k.revoked_at
          from api_keys k where k.key_hash = hash
      $$;
      revoke all on function connect_agent_by_token(text), connect_api_key_by_hash(text) from public;
      grant execute on function connect_agent_by_token(text), connect_api_key_by_hash(text) to connect_app;

      -- An empty copy of a live table in connect_rebuild: columns, defaults, checks, constraints and indexes under
      -- their own names, policies, grants and owner. Row-level security is switched on at the swap (the rows are
      -- written by the owner, whom FORCE would subject to the policies). A table with triggers or dependents other than
      -- its own constraints is refused here or, at the latest, by the swap's DROP: the rebuild then rolls back whole.
      create function connect_shadow_create(p_schema text, p_table text) returns void language plpgsql as $fn$
      declare
        live regclass := format('%I.%I', p_schema, p_table)::regclass;
        shadow text := format('connect_rebuild.%I', p_table);
        owner_name name;
        r record;
        def text;
      begin
        if exists (select from pg_trigger where tgrelid = live and not tgisinternal) then
          raise exception 'cannot rebuild %: it has triggers', live;
        end if;
        execute format('create table %s (like %s including all excluding indexes)', shadow, live);
        select pg_get_userbyid(relowner) into owner_name from pg_class where oid = live;
        if owner_name <> current_user then
          execute format('alter table %s owner to %I', shadow, owner_name);
        end if;
        for r in select conname, pg_get_constraintdef(oid) as condef from pg_constraint
                  where conrelid = live and contype in ('p', 'u', 'x') order by conname loop
          execute format('alter table %s add constraint %I %s', shadow, r.conname, r.condef);
        end loop;
        for r in select pg_get_indexdef(i.indexrelid) as indexdef from pg_index i
                  where i.indrelid = live
                    and not exists (select from pg_constraint k where k.conrelid = live and k.conindid = i.indexrelid) loop
          -- pg_get_indexdef qualifies the table unless it is visible on the search path.
          def := replace(r.indexdef, ' ON ' || format('%I.%I', p_schema, p_table) || ' ', ' ON ' || shadow || ' ');
          if def = r.indexdef then
            def := replace(r.indexdef, ' ON ' || quote_ident(p_table) || ' ', ' ON ' || shadow || ' ');
          end if;
          if def = r.indexdef then
            raise exception 'cannot rebuild %: unexpected index definition %', live, r.indexdef;
          end if;
          execute def;
        end loop;
        for r in select * from pg_policies where schemaname = p_schema and tablename = p_table loop
          execute format('create policy %I on %s as %s for %s to %s', r.policyname, shadow, r.permissive, r.cmd,
              (select string_agg(quote_ident(g), ', ') from unnest(r.roles) g))
            || coalesce(' using (' || r.qual || ')', '') || coalesce(' with check (' || r.with_check || ')', '');
        end loop;
        for r in select a.privilege_type, a.grantee, a.is_grantable from pg_class c, aclexplode(c.relacl) a
                  where c.oid = live and a.grantee <> c.relowner loop
          execute format('grant %s on %s to %s', r.privilege_type, shadow,
              case when r.grantee = 0 then 'public' else quote_ident(pg_get_userbyid(r.grantee)) end)
            || case when r.is_grantable then ' with grant option' else '' end;
        end loop;
      end
      $fn$;

      -- Replaces a live table by its filled shadow: row-level security as the live table has it, fresh statistics,
      -- then DROP (no CASCADE: a dependent object stops the swap) and the shadow moved into the live schema, where its
      -- indexes and constraints take back their names.
      create function connect_shadow_swap(p_schema text, p_table text) returns void language plpgsql as $fn$
      declare
        live regclass := format('%I.%I', p_schema, p_table)::regclass;
        shadow text := format('connect_rebuild.%I', p_table);
        rls boolean;
        force_rls boolean;
      begin
        select relrowsecurity, relforcerowsecurity into rls, force_rls from pg_class where oid = live;
        if rls then execute format('alter table %s enable row level security', shadow); end if;
        if force_rls then execute format('alter table %s force row level security', shadow); end if;
        execute format('analyze %s', shadow);
        execute format('drop table %s', live);
        execute format('alter table %s set schema %I', shadow, p_schema);
      end
      $fn$;
      revoke all on function connect_shadow_create(text, text), connect_shadow_swap(text, text) from public;
    `)
  })
}

/** The number of the newest migration: a database whose `connect_migrations` holds it needs nothing from this build. */
export const latest = Math.max(...Object.keys(migrations).map((name) => Number(name.slice(0, 4))))

/** Runs every pending migration; safe to call from several hub processes at once. */
export const run = Migrator.make({})({ loader: Migrator.fromRecord(migrations), table: "connect_migrations" }).pipe(
  // Two processes creating the migrations table at the same moment can collide on the catalog; the loser retries
  // and then waits on the table lock the winner holds.
  Effect.retry({ times: 3, schedule: Schedule.spaced("200 millis") }),
  Effect.withSpan("Migrations.run")
)

/** The newest migration applied to the connected database (0 when none): readable by the hub's runtime role. */
export const current: Effect.Effect<number, never, SqlClient.SqlClient> = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql.unsafe<{ id: number | null }>(`select max(migration_id) as id from connect_migrations`).pipe(
    Effect.map((rows) => rows[0]?.id ?? 0),
    Effect.orElseSucceed(() => 0)
  ))

/**
 * A layer that migrates the database when built, unless it is current already: the hub's runtime role can read
 * `connect_migrations` but may not lock it, so a database migrated by the owner role (see `Database`) is left alone.
 */
export const layer: Layer.Layer<never, Migrator.MigrationError | import("@effect/sql").SqlError.SqlError, SqlClient.SqlClient> =
  Layer.effectDiscard(Effect.flatMap(current, (applied) => (applied >= latest ? Effect.void : run)))
