/**
 * Migration 0014: `connect_audit_source_ip` (0010) is parallel restricted, not parallel safe. It catches a bad address
 * in a plpgsql exception block, which starts a subtransaction, and a parallel worker cannot: a parallel scan or a
 * parallel index build that evaluated it failed ("cannot start subtransactions during a parallel operation") — any
 * `--ip` read under a workspace key's row-level security (which keeps the function out of the index condition), or
 * an operator's over a range too wide for the index. Restricted, it runs in the leader and the rest of a plan may
 * still be parallel.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe(`alter function connect_audit_source_ip(jsonb, jsonb) parallel restricted`)
})
