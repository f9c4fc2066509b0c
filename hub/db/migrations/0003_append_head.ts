/**
 * Migration 0003: `connect_append_head`, which takes the append lock and then reads the head and the given streams'
 * versions in one round trip.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
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
})
