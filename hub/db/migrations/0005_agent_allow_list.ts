/** Migration 0005: the agent allow-list column. */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  // The targets an admin lets an agent expose (AgentAllowListSet); null: anything but cloud metadata addresses.
  yield* sql.unsafe(`alter table agents add column expose_allow text[]`)
})
