/**
 * Migration 0015: shares. The `shares` read model (one row per share code, kept by its SHA-256) and `share_grants`
 * (one row per agent that joined a share), both behind row-level security like the other read models; and the log's
 * second workspace column, `peer_workspace_id`, with the policy that lets a joining workspace read its side.
 *
 * Why a second column on `events` rather than a copy of each event in the joiner's workspace: an event is one fact
 * appended once, and the chain hashes it once; a copy would be a second fact the owner never wrote and could disagree
 * with the first. The owner keeps the events of its share (`workspace_id`); the events that name a joining workspace
 * (`ShareJoined`, `ShareAccessed.byWorkspaceId`, `TunnelOpened`/`TunnelClosed.peerWorkspaceId`) are readable by that
 * workspace too. The column is generated from the event's data, so the writer (which names its columns) is unchanged,
 * the chain (which hashes the named columns) is unchanged, and an event of another type can never gain a peer. A
 * column rather than an expression in the policy, so that a workspace key's reads test a uuid instead of detoasting
 * every row's data.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe(`
      create table shares (
        id               uuid primary key,
        workspace_id     uuid not null,
        name             text,
        code_hash        text not null unique,
        code_prefix      text,
        services         jsonb not null,
        expires_at       timestamptz not null,
        rate_limit       integer,
        rate_window_s    integer,
        created_at       timestamptz not null,
        revoked_at       timestamptz
      );
      create index shares_workspace on shares (workspace_id);
      create table share_grants (
        share_id          uuid not null,
        agent_id          uuid not null,
        workspace_id      uuid not null,
        peer_workspace_id uuid not null,
        joined_at         timestamptz not null,
        primary key (share_id, agent_id)
      );
      create index share_grants_agent on share_grants (agent_id);

      grant select on shares, share_grants to connect_app;
      alter table shares enable row level security;
      alter table shares force row level security;
      create policy workspace_isolation on shares to connect_app
        using (workspace_id = nullif(current_setting('app.workspace_id', true), '')::uuid);
      create policy hub_projections on shares to current_user using (true) with check (true);
      alter table share_grants enable row level security;
      alter table share_grants force row level security;
      -- A grant is the owner's and the joiner's: each sees the grants of its side.
      create policy workspace_isolation on share_grants to connect_app
        using (workspace_id = nullif(current_setting('app.workspace_id', true), '')::uuid
               or peer_workspace_id = nullif(current_setting('app.workspace_id', true), '')::uuid);
      create policy hub_projections on share_grants to current_user using (true) with check (true);
      grant select, insert, update, delete on shares, share_grants to connect_writer;
      create policy hub_writer on shares to connect_writer using (true) with check (true);
      create policy hub_writer on share_grants to connect_writer using (true) with check (true);

      -- The joiner's side of the log (see the header). Only these types name a peer; a value that is not a UUID in
      -- canonical form (never written: the schemas refuse it) gives no peer rather than a failed append.
      alter table events add column peer_workspace_id uuid generated always as (
        case when type in ('ShareJoined', 'TunnelOpened', 'TunnelClosed')
               and data->>'peerWorkspaceId' ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
             then (data->>'peerWorkspaceId')::uuid
             when type = 'ShareAccessed'
               and data->>'byWorkspaceId' ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
             then (data->>'byWorkspaceId')::uuid
        end
      ) stored;
      create index events_peer_workspace on events (peer_workspace_id, position) where peer_workspace_id is not null;
      create policy share_peer on events for select to connect_app
        using (peer_workspace_id = nullif(current_setting('app.workspace_id', true), '')::uuid);
    `)
})
