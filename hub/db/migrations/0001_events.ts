/**
 * Migration 0001: the append-only `events` table (triggers refuse UPDATE, DELETE and TRUNCATE whoever connects)
 * and the projection checkpoints.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
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
})
