/** Migration 0002: the `stream_heads` read model (each stream's version, last position and type, event count). */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
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
})
