/**
 * Events stored past the writer, as another build would store them: under the append lock and chained by Postgres
 * itself (`connect_event_hash`, the expression the chain check trigger compares with). For a type this build does not
 * know (the writer only appends the catalog's), or a time the writer would not stamp (a past hour).
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { uuidv7 } from "../../core/Ids.ts"
import * as PgEventLog from "../../hub/eventlog/PgEventLog.ts"

/** One event to store as version 1 of its stream. */
export interface RawEvent {
  readonly stream: string
  readonly type: string
  readonly data: unknown
  /** Its id (default: a new UUIDv7). */
  readonly id?: string
  /** Its meta, encoded (default: a system actor). */
  readonly meta?: unknown
  readonly workspaceId?: string | null
  /** When it was recorded (default: the database's clock, to the millisecond, as the writer stamps). */
  readonly at?: Date
}

/** Appends `event` chained to the head of the log. */
export const appendRaw = (event: RawEvent) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.withTransaction(
      Effect.gen(function*() {
        yield* sql.unsafe(`select pg_advisory_xact_lock($1)`, [PgEventLog.APPEND_LOCK_KEY])
        yield* sql.unsafe(
          `with head as (select position, hash from events order by position desc limit 1),
           n as (select coalesce((select position from head), 0) + 1 as position,
                        coalesce((select hash from head), decode(repeat('00', 32), 'hex')) as prev,
                        coalesce($7::timestamptz, date_trunc('milliseconds', clock_timestamp())) as at)
           insert into events (position, id, stream, version, workspace_id, type, data, meta, recorded_at, prev_hash, hash)
           select n.position, $1::uuid, $2, 1, $6::uuid, $3, $4::jsonb, $5::jsonb, n.at, n.prev,
                  connect_event_hash(n.prev, n.position, $1::uuid, $2, 1, $6::uuid, $3, $4::jsonb, $5::jsonb, n.at)
             from n`,
          [
            event.id ?? uuidv7(),
            event.stream,
            event.type,
            JSON.stringify(event.data),
            JSON.stringify(event.meta ?? { actor: { kind: "system" } }),
            event.workspaceId ?? null,
            event.at?.toISOString() ?? null
          ]
        )
      })
    )
  )

/** Appends one event of `type` with `data`, as a newer build would: no workspace, a system actor, recorded now. */
export const appendForeign = (stream: string, type: string, data: unknown) => appendRaw({ stream, type, data })
