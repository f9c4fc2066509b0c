/**
 * Events of a type this build does not know, stored as a newer build would store them: under the append lock and
 * chained by Postgres itself (`connect_event_hash`, the expression the chain check trigger compares with), past the
 * writer, which only appends the catalog's types.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { uuidv7 } from "../../core/Ids.ts"
import * as PgEventLog from "../../hub/eventlog/PgEventLog.ts"

/** Appends one event of `type` with `data` (version 1 of `stream`, no workspace, a system actor). */
export const appendForeign = (stream: string, type: string, data: unknown) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.withTransaction(
      Effect.gen(function*() {
        yield* sql.unsafe(`select pg_advisory_xact_lock($1)`, [PgEventLog.APPEND_LOCK_KEY])
        yield* sql.unsafe(
          `with head as (select position, hash from events order by position desc limit 1),
           n as (select coalesce((select position from head), 0) + 1 as position,
                        coalesce((select hash from head), decode(repeat('00', 32), 'hex')) as prev,
                        date_trunc('milliseconds', clock_timestamp()) as at)
           insert into events (position, id, stream, version, workspace_id, type, data, meta, recorded_at, prev_hash, hash)
           select n.position, $1::uuid, $2, 1, null, $3, $4::jsonb, $5::jsonb, n.at, n.prev,
                  connect_event_hash(n.prev, n.position, $1::uuid, $2, 1, null, $3, $4::jsonb, $5::jsonb, n.at)
             from n`,
          [uuidv7(), stream, type, JSON.stringify(data), JSON.stringify({ actor: { kind: "system" } })]
        )
      })
    )
  )
