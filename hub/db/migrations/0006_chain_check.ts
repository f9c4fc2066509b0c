/**
 * Migration 0006: `connect_event_hash` (the chain hash in SQL) and the insert trigger that refuses any row verify
 * would report.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
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
})
