/**
 * The log's latest integrity facts in Postgres (`GET /v1/audit/integrity`): the newest `connect audit verify` run (an
 * `AuditRead` of kind `verify`, found through the GIN index on `data`, so a log of a million API reads and no verify
 * run costs one index probe, not a scan) and the newest `CheckpointSigned` (the type index, backward). Run under the
 * caller's scope like every audit read: a workspace key's row-level security hides both (they are hub-level).
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect } from "effect"
import type { RawEvent } from "../core/EventLog.ts"
import { COLUMNS, rawOf, type Row } from "./PgQuery.ts"

/** The newest verify run and signed checkpoint, each undefined when there is none the caller sees. */
export const latest: Effect.Effect<
  { readonly verify: RawEvent | undefined; readonly checkpoint: RawEvent | undefined },
  SqlError,
  SqlClient.SqlClient
> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const [verify] = yield* sql.unsafe<Row>(
    `with runs as materialized (
       select position from events where data @> '{"kind":"verify"}'::jsonb and type = 'AuditRead'
     )
     select ${COLUMNS} from events where position = (select max(position) from runs)`
  )
  const [checkpoint] = yield* sql.unsafe<Row>(
    `select ${COLUMNS} from events where type = 'CheckpointSigned' order by type, position desc limit 1`
  )
  return { verify: verify && rawOf(verify), checkpoint: checkpoint && rawOf(checkpoint) }
}).pipe(Effect.withSpan("Audit.integrity"))
