/**
 * Migration 0028: `connect_append` notifies only when the writer lets it. A NOTIFY per commit cost the writer's round
 * trip 0.3–0.5 ms with one process listening (measured at one caller, both sides real-time so that load did not
 * decide it: 1.07–1.18 ms without a listener, 1.38–1.66 ms with one), and a hub always listens, for other hubs' commits.
 * The writer now announces at most one head per pacing interval (hub/eventlog/PgNotifyPacer.ts); the body is 0009's
 * otherwise.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe(`
      create or replace function connect_append(
        lock_key bigint, head_position bigint, head_hash bytea, guess_streams text[], guess_versions integer[],
        stored_ids uuid[], positions bigint[], ids uuid[], streams text[], versions integer[], workspaces uuid[],
        types text[], data text, meta text, recorded timestamptz, prev_hashes bytea[], hashes bytea[], max_skew interval
      ) returns void language plpgsql volatile as $$
      declare
        stored_position bigint;
        stored_hash bytea;
        stored_at timestamptz;
      begin
        perform pg_advisory_xact_lock(lock_key);
        select e.position, e.hash, e.recorded_at into stored_position, stored_hash, stored_at
          from events e order by e.position desc limit 1;
        if coalesce(stored_position, 0) <> head_position
            or coalesce(stored_hash, decode(repeat('00', 32), 'hex')) <> head_hash then
          raise exception 'connect_append: the head is at %, not %', coalesce(stored_position, 0), head_position
            using errcode = 'CN001';
        end if;
        if cardinality(guess_streams) > 0 and exists (
            select 1 from unnest(guess_streams, guess_versions) g(s, v)
             where coalesce((select e.version from events e where e.stream = g.s order by e.version desc limit 1), 0)
                   <> g.v) then
          raise exception 'connect_append: a stream is not at the version guessed' using errcode = 'CN002';
        end if;
        if cardinality(stored_ids) > 0 and exists (select 1 from events e where e.id = any(stored_ids)) then
          raise exception 'connect_append: an id is stored already' using errcode = 'CN003';
        end if;
        -- max_skew is null when the time comes from the database (the slow path); statement_timestamp() is when the
        -- message arrived, so that a wait for the lock does not count against the writer.
        if recorded < stored_at or (max_skew is not null and (recorded > statement_timestamp() + max_skew
                                                              or recorded < statement_timestamp() - max_skew)) then
          raise exception 'connect_append: the time stamped is before the head''s or too far off the database''s clock'
            using errcode = 'CN004';
        end if;
        if cardinality(positions) = 0 then
          return;
        end if;
        insert into events (position, id, stream, version, workspace_id, type, data, meta, recorded_at, prev_hash, hash)
          select p, i, s, v, w, t, d::jsonb, m::jsonb, recorded, ph, h
            from unnest(positions, ids, streams, versions, workspaces, types,
                        -- Payloads travel as newline-joined text (jsonb text never holds a raw newline): an array
                        -- literal would escape every quote, and unescaping them was a third of the bind time.
                        string_to_array(data, E'\\n'), string_to_array(meta, E'\\n'), prev_hashes, hashes)
                 as u(p, i, s, v, w, t, d, m, ph, h);
        -- The writer paces its notifications (PgNotifyPacer): a transaction that set connect.notify to off announces
        -- nothing, and a later one (or a notification of its own) announces the head. Any other writer notifies.
        if coalesce(current_setting('connect.notify', true), '') <> 'off' then
          perform pg_notify('connect_events', positions[cardinality(positions)]::text);
        end if;
      end
      $$;

      -- create or replace resets every property not given again.
      do $$
      begin
        execute format('alter function connect_append(bigint, bigint, bytea, text[], integer[], uuid[], bigint[], uuid[],'
          ' text[], integer[], uuid[], text[], text, text, timestamptz, bytea[], bytea[], interval)'
          ' set search_path = pg_catalog, %I, pg_temp', current_schema());
      end
      $$;
    `)
})
