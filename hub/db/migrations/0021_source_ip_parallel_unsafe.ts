/**
 * Migration 0021: `connect_audit_source_ip` is parallel unsafe, not restricted (0014). Restricted keeps it out of the
 * workers, but a query whose plan has a Gather runs in parallel mode as a whole, the leader included, and no process in
 * parallel mode may start a subtransaction, which the function's exception block does: "cannot start subtransactions
 * during a parallel operation" (SQLSTATE 25000, in BeginInternalSubTransaction). A workspace key's `--ip` read met it
 * once the shares' row-level security policy (0015) made the planner pick a parallel plan. Unsafe, a query that calls
 * it is planned without workers; the index on it is unaffected.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe(`alter function connect_audit_source_ip(jsonb, jsonb) parallel unsafe`)
})
