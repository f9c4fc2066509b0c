/**
 * Migration 0008: the `connect_rebuild` schema and the functions that create and swap in a projection's shadow
 * tables (ProjectionRunner.rebuild); the credential lookups return named columns.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
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
