/**
 * Migration 0009: `connect_append`, the writer's append in one statement, and the chain check per statement instead of
 * per row.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe(`
      -- The whole of an append, called by the writer in the same message as its begin, its inline projections' writes
      -- and its commit: one round trip. The writer computes positions, versions and hashes from the head it last
      -- committed (core/AppendBatch); this function takes the append lock and checks that guess before inserting. When
      -- it is wrong the function raises a CN0xx error, the writer rolls back, reads the head under the lock
      -- (connect_append_head) and tries again: another hub appended (CN001), a stream the writer did not know already
      -- has events (CN002), an id may be stored already (CN003: a caller's retry, answered from the log), or the time
      -- it stamped is before the head's or more than max_skew off the database's clock (CN004: the slow path stamps
      -- the database's time, never before the head's). So recorded_at never decreases along the chain.
      create function connect_append(
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
        perform pg_notify('connect_events', positions[cardinality(positions)]::text);
      end
      $$;

      -- The chain check of migration 0006, once per statement over the rows it inserted instead of once per row: the
      -- same conditions (no gap after the stored head, each prev_hash the previous row's stored hash, each hash the
      -- one verify computes from the stored values, with the same SQL expression), set-based, and one more: no row is
      -- recorded before its predecessor. Per row, the plpgsql trigger cost more than the insert itself.
      create function events_check_chain_rows() returns trigger language plpgsql as $$
      declare
        bad bigint;
        why text;
      begin
        select n.position,
               case
                 when (case when n.rn > 1 then n.position <> n.batch_prev_position + 1
                            else n.position <> 1 and p.position is null end)
                   then format('position %s does not follow the head (position %s is missing)', n.position,
                               n.position - 1)
                 when n.recorded_at < (case when n.rn > 1 then n.batch_prev_at else p.recorded_at end)
                   then format('recorded_at of position %s is before that of position %s', n.position, n.position - 1)
                 when n.prev_hash is distinct from (case when n.rn > 1 then n.batch_prev_hash
                                                         when n.position = 1 then decode(repeat('00', 32), 'hex')
                                                         else p.hash end)
                   then format('prev_hash of position %s is not the hash of position %s', n.position, n.position - 1)
                 else format('hash of position %s is not sha256(prev_hash || canonical(row)) of the stored values',
                             n.position)
               end
          into bad, why
          from (select i.*, lag(i.hash) over w as batch_prev_hash, lag(i.position) over w as batch_prev_position,
                       lag(i.recorded_at) over w as batch_prev_at, row_number() over w as rn
                  from inserted i window w as (order by i.position)) n
          left join events p on n.rn = 1 and p.position = n.position - 1
         where (case when n.rn > 1 then n.position <> n.batch_prev_position + 1
                     else n.position <> 1 and p.position is null end)
            or n.recorded_at < (case when n.rn > 1 then n.batch_prev_at else p.recorded_at end)
            or n.prev_hash is distinct from (case when n.rn > 1 then n.batch_prev_hash
                                                  when n.position = 1 then decode(repeat('00', 32), 'hex')
                                                  else p.hash end)
            or n.hash is distinct from connect_event_hash(n.prev_hash, n.position, n.id, n.stream, n.version,
                                                          n.workspace_id, n.type, n.data, n.meta, n.recorded_at)
         order by n.position
         limit 1;
        if bad is not null then
          -- Positions only: the server log must not hold event contents.
          raise exception 'events: %', why using errcode = 'check_violation';
        end if;
        return null;
      end
      $$;
      drop trigger events_check_chain on events;
      drop function events_check_chain();
      create trigger events_check_chain after insert on events referencing new table as inserted
        for each statement execute function events_check_chain_rows();

      -- The head read under the lock for the slow path, now with the time an append is stamped at: the database's,
      -- and never before the head's.
      drop function connect_append_head(bigint, text[]);
      create function connect_append_head(lock_key bigint, streams text[])
        returns table (stream text, version bigint, hash bytea, now timestamptz)
        language plpgsql volatile as $$
      begin
        perform pg_advisory_xact_lock(lock_key);
        return query
          select null::text, h.position, h.hash,
                 greatest(date_trunc('milliseconds', clock_timestamp()), h.recorded_at)
            from (select 1) one
            left join lateral (select e.position, e.hash, e.recorded_at from events e order by e.position desc limit 1) h
              on true
          union all
          select s, (select e.version from events e where e.stream = s order by e.version desc limit 1)::bigint, null, null
            from unnest(streams) s;
      end
      $$;

      -- These functions name events unqualified: a session could otherwise put a temporary table called events
      -- first in its search path, and the chain check would compare new rows with its fake head. pg_temp goes last.
      do $$
      begin
        execute format('alter function connect_append(bigint, bigint, bytea, text[], integer[], uuid[], bigint[], uuid[],'
          ' text[], integer[], uuid[], text[], text, text, timestamptz, bytea[], bytea[], interval)'
          ' set search_path = pg_catalog, %I, pg_temp', current_schema());
        execute format('alter function connect_append_head(bigint, text[]) set search_path = pg_catalog, %I, pg_temp',
          current_schema());
        execute format('alter function events_check_chain_rows() set search_path = pg_catalog, %I, pg_temp',
          current_schema());
      end
      $$;
    `)
})
