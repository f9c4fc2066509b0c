/**
 * Migration 0016: the `links` read model (public HTTP links: token hash, service, limits, revocation), behind the same
 * row-level security as the other read models: `connect_app` sees its workspace's links only, the hub's roles every
 * one (the public proxy looks a link up by its token hash before any workspace is known).
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe(`
      create table links (
        id                    uuid primary key,
        workspace_id          uuid not null,
        service_id            uuid not null,
        service_name          text,
        token_hash            text not null unique,
        expires_at            timestamptz not null,
        methods               text[] not null,
        path_prefixes         text[] not null,
        rate_limit_per_minute integer not null,
        created_at            timestamptz not null,
        revoked_at            timestamptz
      );
      create index links_workspace on links (workspace_id);
      grant select on links to connect_app;
      grant select, insert, update, delete on links to connect_writer;
      alter table links enable row level security;
      alter table links force row level security;
      create policy workspace_isolation on links to connect_app
        using (workspace_id = nullif(current_setting('app.workspace_id', true), '')::uuid);
      create policy hub_projections on links to current_user using (true) with check (true);
      create policy hub_writer on links to connect_writer using (true) with check (true);
    `)
})
