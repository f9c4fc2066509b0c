/**
 * Migration 0030: the coalescing windows of offline audit reads (audit/PgReadWindows.ts). `connect audit verify` and
 * `connect audit export` run as separate processes, so a window cannot live in memory as the hub's denial windows do:
 * `audit_read_windows` holds, per actor and kind, the open window (its start, length and the outcome its runs share)
 * and the runs counted in it that are not on the log yet; `audit_read_outbox` holds the `AuditRead` events decided but
 * not yet appended, each under the event id it will be appended with (the log's append is idempotent by id), so that a
 * process killed between deciding and appending leaves them for the next run or the hub to append. Both are hub-level
 * (no workspace can read them: no grant to connect_app).
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe(`
      create table audit_read_windows (
        actor        text not null,
        kind         text not null,
        window_ms    integer not null check (window_ms > 0),
        started_at   timestamptz not null,
        signature    text not null,
        pending      integer not null default 0 check (pending >= 0),
        first_at     timestamptz,
        last_at      timestamptz,
        workspace_id uuid,
        last_event   jsonb,
        last_meta    jsonb,
        primary key (actor, kind)
      );
      create table audit_read_outbox (
        id           uuid primary key,
        stream       text not null,
        workspace_id uuid,
        event        jsonb not null,
        meta         jsonb not null,
        created_at   timestamptz not null default clock_timestamp()
      );
      grant select, insert, update, delete on audit_read_windows, audit_read_outbox to connect_writer;
    `)
})
