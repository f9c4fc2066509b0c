/**
 * Migration 0022: the `agents` read model keeps the token lifetime an agent was provisioned with (`connect up --ttl`,
 * `AgentProvisioned.ttlSeconds`; null: the hub's default), so the hub caps the expiry warning at a quarter of it. The
 * credential lookup (0008) names its columns, so it is redefined with this one.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe(`
    alter table agents add column token_ttl_seconds integer check (token_ttl_seconds > 0);
    drop function connect_agent_by_token(text);
    create function connect_agent_by_token(hash text) returns table (
      id uuid, workspace_id uuid, label text, token_hash text, token_expires_at timestamptz, prev_token_hash text,
      prev_token_valid_until timestamptz, revoked_at timestamptz, last_ip text, connected boolean,
      connected_at timestamptz, created_at timestamptz, expose_allow text[], token_ttl_seconds integer
    ) language sql stable security definer set search_path from current as $$
      select a.id, a.workspace_id, a.label, a.token_hash, a.token_expires_at, a.prev_token_hash,
             a.prev_token_valid_until, a.revoked_at, a.last_ip, a.connected, a.connected_at, a.created_at, a.expose_allow,
             a.token_ttl_seconds
        from agents a where a.token_hash = hash or a.prev_token_hash = hash
    $$;
    revoke all on function connect_agent_by_token(text) from public;
    grant execute on function connect_agent_by_token(text) to connect_app;
  `)
})
