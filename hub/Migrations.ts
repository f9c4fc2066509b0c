/**
 * The hub's database schema as numbered migrations run through @effect/sql's Migrator: the append-only `events`
 * table with its triggers, projection checkpoints, and the read models of the core projections.
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
  })
}

/** Runs every pending migration; safe to call from several hub processes at once. */
export const run = Migrator.make({})({ loader: Migrator.fromRecord(migrations), table: "connect_migrations" }).pipe(
  // Two processes creating the migrations table at the same moment can collide on the catalog; the loser retries
  // and then waits on the table lock the winner holds.
  Effect.retry({ times: 3, schedule: Schedule.spaced("200 millis") }),
  Effect.withSpan("Migrations.run")
)

/** A layer that migrates the database when built. */
export const layer: Layer.Layer<never, Migrator.MigrationError | import("@effect/sql").SqlError.SqlError, SqlClient.SqlClient> =
  Layer.effectDiscard(run)
