/**
 * Migration 0024: a coalesced `ConsoleSignInFailed` now counts as the refusals it stands for in the stats rollups
 * (audit/StatsProjection.ts `COALESCED`), as `ApiKeyAuthFailed` does. Rollups folded before counted such a window as
 * one; when the log holds one, the rollups are emptied and their checkpoint dropped, so that the hub replays them from
 * position 0 (every read model can be rebuilt with identical content). A log without one keeps its rollups.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe(`
      do $$
      begin
        if exists (select 1 from events where type = 'ConsoleSignInFailed' and data ? 'count') then
          truncate audit_rollup_hourly, audit_rollup_ips, audit_rollup_span, audit_rollup_names;
          delete from projection_checkpoints where name = 'audit_rollups';
        end if;
      end
      $$;
    `)
})
