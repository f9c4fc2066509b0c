/**
 * The chain as the log's readers check it: each row's links read as text with its canonical form assembled from the
 * very strings Postgres sent (`readLinks`, for `verify --independent`), or the whole check done by Postgres over a
 * range, returning only the first break (`checkChain`).
 */
import type { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import type { ChainBreak, ChainLink, EventLogError } from "../../core/EventLog.ts"
import { canonicalText } from "../../core/HashChain.ts"
import { unavailable } from "./PgAppendStatements.ts"

// Every column as text and rows as arrays: nothing for the driver to parse, and the canonical text is assembled from
// the very strings Postgres sent. Row parsing was half of verify's time when bytea and timestamps were decoded.
// (`order by events.position`: a bare `position` would name the text output column and sort "10" before "2".)
export const readLinks = (sql: SqlClient.SqlClient) => (after: number, limit: number): Effect.Effect<Array<ChainLink>, EventLogError> =>
  sql
    .unsafe(
      `select position::text, id::text, stream, version::text, workspace_id::text, type, data::text, meta::text,
         (extract(epoch from recorded_at) * 1000)::bigint::text, encode(prev_hash, 'hex'), encode(hash, 'hex')
       from events where position > $1 order by events.position limit $2`,
      [after, limit]
    )
    .values.pipe(
      Effect.map((rows) => {
        const links: Array<ChainLink> = new Array(rows.length)
        for (let i = 0; i < rows.length; i++) {
          const r = rows[i] as ReadonlyArray<string | null>
          links[i] = {
            position: Number(r[0]),
            canonical: canonicalText(r[0]!, r[1]!, r[2]!, r[3]!, r[4] ?? null, r[5]!, r[6]!, r[7]!, r[8]!),
            prevHash: r[9]!,
            hash: r[10]!
          }
        }
        return links
      }),
      Effect.mapError(unavailable),
      Effect.withSpan("EventLog.readLinks")
    )

// The chain recomputed by Postgres: the canonical text of `canonicalText` built in SQL (to_json renders a string as
// JSON.stringify does; integers and the epoch milliseconds print alike), hashed with pg_catalog.sha256 and compared
// with the stored hash and the stored predecessor. Nothing crosses the wire but the first break, so a range costs
// only the server's reading and hashing, and two ranges at once use two cores.
export const checkChain = (sql: SqlClient.SqlClient) => (after: number, upTo: number): Effect.Effect<ChainBreak | undefined, EventLogError> =>
  sql
    .unsafe<{ position: number; reason: ChainBreak["reason"]; missing: number }>(
      `with page as (
         select position, prev_hash, lag(position) over w as prev_position, lag(hash) over w as prev_stored,
                hash = pg_catalog.sha256(prev_hash || pg_catalog.convert_to(
                  '[' || position || ',' || to_json(id::text)::text || ',' || to_json(stream)::text || ',' || version
                  || ',' || coalesce(to_json(workspace_id::text)::text, 'null') || ',' || to_json(type)::text || ','
                  || data::text || ',' || meta::text || ',' || (extract(epoch from recorded_at) * 1000)::bigint
                  || ']', 'UTF8')) as hash_ok
           from events where position >= $1 and position <= $2
         window w as (order by position)
       ), checked as (
         -- Row $1 is read only for its hash; when it is missing, $1 itself is the first gap.
         select position, prev_hash, hash_ok, prev_stored,
                coalesce(prev_position, case when $1 = 0 then 0 else -1 end) as prev_position
           from page where position > $1
       )
       select position,
              case when prev_position <> position - 1 then 'gap'
                   when prev_hash <> coalesce(prev_stored, decode(repeat('00', 32), 'hex')) then 'broken_link'
                   else 'hash_mismatch' end as reason,
              case when prev_position < 0 then $1 else prev_position + 1 end as missing
         from checked
        where prev_position <> position - 1 or prev_hash <> coalesce(prev_stored, decode(repeat('00', 32), 'hex'))
           or not hash_ok
        order by position limit 1`,
      [after, upTo]
    )
    .pipe(
      Effect.map((rows): ChainBreak | undefined => {
        const row = rows[0]
        if (!row) return undefined
        return { position: Number(row.reason === "gap" ? row.missing : row.position), reason: row.reason }
      }),
      Effect.mapError(unavailable),
      Effect.withSpan("EventLog.checkChain")
    )
