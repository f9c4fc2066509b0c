/**
 * Migration 0012: API key scopes and the log's row-level security. `api_keys.scope` is `workspace` (reads its own
 * workspace) or `operator` (reads every workspace); keys created before scopes take theirs from the log (the
 * bootstrap key is the operator's, every other one a workspace key), as the projection decides (readmodels/ApiKeys.ts).
 * `events` gets row-level security: `connect_app` (the role workspace-scoped reads switch to, db/Scoped.ts) sees only
 * the events of `app.workspace_id` and never a hub-level one (no workspace); the hub's role keeps seeing everything.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe(`
      alter table api_keys add column scope text not null default 'workspace'
        check (scope in ('workspace', 'operator'));
      -- The same rule as the projection, so that a rebuild from position 0 gives these rows again.
      update api_keys k set scope = case
          when e.data->>'scope' is not null then e.data->>'scope'
          when e.meta->'actor'->>'kind' = 'system' and e.meta->'actor'->>'id' = 'bootstrap'
            and e.stream = 'workspace-' || (e.data->>'workspaceId') then 'operator'
          else 'workspace' end
        from events e
        where e.type = 'ApiKeyCreated' and e.data->>'apiKeyId' = k.id::text;
      -- The credential lookup names its columns (0008): it gains the scope, last.
      drop function connect_api_key_by_hash(text);
      create function connect_api_key_by_hash(hash text) returns table (
        id uuid, workspace_id uuid, name text, prefix text, key_hash text, created_at timestamptz, revoked_at timestamptz,
        scope text
      ) language sql stable security definer set search_path from current as $$
        select k.id, k.workspace_id, k.name, k.prefix, k.key_hash, k.created_at, k.revoked_at, k.scope
          from api_keys k where k.key_hash = hash
      $$;
      revoke all on function connect_api_key_by_hash(text) from public;
      grant execute on function connect_api_key_by_hash(text) to connect_app;

      -- Reads for a workspace key run as connect_app: only that workspace's events. A hub-level event (workspace_id
      -- null) matches no setting, so only the operator (reading as the hub's role) sees it. Without FORCE the owner
      -- (migrations, the chain check it runs) is not subject to these policies; the hub's role is, through its own.
      alter table events enable row level security;
      grant select on events to connect_app;
      create policy workspace_isolation on events for select to connect_app
        using (workspace_id = nullif(current_setting('app.workspace_id', true), '')::uuid);
      create policy hub_writer on events to connect_writer using (true) with check (true);
    `)
})
