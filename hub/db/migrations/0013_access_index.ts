/**
 * Migration 0013: the index behind `connect audit access` (audit/PgAccess.ts): per agent and event type, its events
 * by position, for the agent events only, so that "the last AgentConnected of agent X at or before position P" is one
 * backward step in an index instead of a scan of every agent event of the workspace (~900 ms over 1,000,000 events
 * without it, ~1 ms with it; `npm run bench -- audit`).
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  // The list is the query's (PgAccess.AGENT_TYPES) word for word: Postgres uses a partial index only for a query whose
  // conditions imply its predicate.
  yield* sql.unsafe(`
      create index events_agent_state on events ((data->>'agentId'), type, position)
        where type in ('AgentProvisioned', 'AgentTokenRotated', 'AgentTokenRevoked', 'AgentConnected',
                       'AgentDisconnected', 'AgentAllowListSet');
    `)
})
