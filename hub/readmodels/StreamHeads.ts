/**
 * The `stream_heads` read model: one row per stream with its version, last position and type, and event count.
 * An inline projection; it is what `connect audit` lists streams from and the model rebuild tests compare.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import type { StoredEvent } from "../../core/EventLog.ts"
import type { Projection } from "../../core/Projection.ts"
import { ProjectionSql } from "../../core/ProjectionSql.ts"

interface Row {
  stream: string
  workspaceId: string | null
  version: number
  lastPosition: number
  lastType: string
  count: number
  updatedAt: Date
}

/** Folds a batch into one row per stream, so the database sees one multi-row upsert per batch. */
const fold = (events: ReadonlyArray<StoredEvent>): Array<Row> => {
  const rows = new Map<string, Row>()
  for (const e of events) {
    const row = rows.get(e.stream)
    if (row) {
      row.version = e.version
      row.lastPosition = e.position
      row.lastType = e.type
      row.count += 1
      row.updatedAt = e.recordedAt
    } else {
      rows.set(e.stream, {
        stream: e.stream,
        workspaceId: e.workspaceId,
        version: e.version,
        lastPosition: e.position,
        lastType: e.type,
        count: 1,
        updatedAt: e.recordedAt
      })
    }
  }
  return [...rows.values()]
}

/** The stream heads projection. */
export const projection: Projection<ProjectionSql> = {
  name: "stream_heads",
  mode: "inline",
  apply: (events) =>
    Effect.gen(function* () {
      if (events.length === 0) return
      const sql = yield* ProjectionSql
      const rows = fold(events)
      yield* sql.execute(
        `insert into stream_heads (stream, workspace_id, version, last_position, last_type, event_count, updated_at)
         select * from unnest($1::text[], $2::uuid[], $3::int[], $4::bigint[], $5::text[], $6::int[], $7::timestamptz[])
         on conflict (stream) do update set
           version = excluded.version, last_position = excluded.last_position, last_type = excluded.last_type,
           event_count = stream_heads.event_count + excluded.event_count, updated_at = excluded.updated_at`,
        [
          rows.map((r) => r.stream),
          rows.map((r) => r.workspaceId),
          rows.map((r) => r.version),
          rows.map((r) => r.lastPosition),
          rows.map((r) => r.lastType),
          rows.map((r) => r.count),
          rows.map((r) => r.updatedAt)
        ]
      )
    }),
  reset: Effect.flatMap(ProjectionSql, (sql) => sql.execute(`delete from stream_heads`))
}

/**
 * Tunnel streams whose last event is a `TunnelOpened` recorded by hub `hubId` (or by no hub), with that event: the
 * tunnels it left open (one row per stream, so one per tunnel).
 */
export const tunnelsLeftOpen = Effect.fn("StreamHeads.tunnelsLeftOpen")(function*(hubId: string) {
  const sql = yield* SqlClient.SqlClient
  return yield* sql.unsafe<{ stream: string; workspace_id: string | null; data: unknown; recorded_at: Date }>(
    `select h.stream, h.workspace_id, e.data, e.recorded_at
         from stream_heads h join events e on e.position = h.last_position
        where h.last_type = 'TunnelOpened' and coalesce(e.meta->>'hubId', $1) = $1`,
    [hubId]
  )
})
