/**
 * Migration 0010: the indexes behind `connect audit`'s filters (time, type, agent, service, outcome, source address;
 * the workspace has `events_workspace_position` since 0001), and the two functions the audit query and its indexes
 * share: `connect_audit_denied` (audit/Groups.ts `outcomeOf`, the same rule) and `connect_audit_source_ip`.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe(`
      create index events_recorded_at on events (recorded_at);
      create index events_type_position on events (type, position);
      -- Agent, service, label and name look-ups are containment queries on data (ids and names in any field).
      create index events_data_paths on events using gin (data jsonb_path_ops);
      create index events_actor_id on events ((meta->'actor'->>'id'), position);

      create function connect_audit_denied(type text, data jsonb) returns boolean
        language sql immutable parallel safe
        return type in ('AgentAuthFailed', 'ApiKeyAuthFailed', 'ReachDenied')
          or (type in ('ShareAccessed', 'LinkAccessed') and data->>'outcome' = 'denied')
          or (type = 'TunnelClosed' and data->>'reason' = 'connect_failed');
      create index events_denied on events (position) where connect_audit_denied(type, data);

      -- The recorded address is whatever the hub saw: one that is not an address must index as null, never fail an
      -- append.
      create function connect_audit_source_ip(data jsonb, meta jsonb) returns inet
        language plpgsql immutable parallel safe as $$
      begin
        return coalesce(meta->>'sourceIp', data->>'ip', data->>'newIp')::inet;
      exception when others then
        return null;
      end
      $$;
      create index events_source_ip on events (connect_audit_source_ip(data, meta), position);
    `)
})
