/**
 * Migration 0020: a refused console sign-in (`ConsoleSignInFailed`, hub/console/) is a denial, as audit/Groups.ts
 * `outcomeOf` says: `connect_audit_denied` learns the type. The partial index `events_denied` needs no rebuild: no
 * event of that type exists before this build, and each new row is indexed with the function as it now is.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe(`
      create or replace function connect_audit_denied(type text, data jsonb) returns boolean
        language sql immutable parallel safe
        return type in ('AgentAuthFailed', 'ApiKeyAuthFailed', 'ReachDenied', 'ConsoleSignInFailed')
          or (type in ('ShareAccessed', 'LinkAccessed') and data->>'outcome' = 'denied')
          or (type = 'TunnelClosed' and data->>'reason' = 'connect_failed');
    `)
})
