/**
 * What Postgres itself allows for a one-caller append on this machine, measured in the eventlog bench's run: pgbench
 * (a C client, so no client-side cost of ours) calling a plpgsql function that does the whole append server-side —
 * the append lock, the head, the hash over the stored values with the very expression verify uses
 * (`connect_event_hash`), the insert into `events` (its chain-check trigger included) and the `stream_heads` upsert —
 * against pgbench running the baseline's plain INSERT per transaction into the same columns and indexes. Their
 * ratio is the most any writer could reach at one caller here; the writer's own ratio is read against it.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import type { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { APPEND_LOCK_KEY } from "../../hub/eventlog/PgAppendStatements.ts"
import { median } from "./Report.ts"

/** How pgbench reaches the bench database (libpq's environment variables). */
export interface PgbenchTarget {
  readonly env: NodeJS.ProcessEnv
}

/** One pgbench run: transactions per second and average latency. */
interface Run {
  readonly tps: number
  readonly latencyMs: number
}

const runPgbench = (target: PgbenchTarget, script: string, seconds: number): Run => {
  const result = ChildProcess.spawnSync(
    "pgbench",
    ["-n", "-M", "prepared", "-c", "1", "-T", String(seconds), "-f", script],
    { encoding: "utf8", env: { ...process.env, ...target.env }, timeout: (seconds + 60) * 1000 }
  )
  const tps = /^tps = ([\d.]+)/m.exec(result.stdout ?? "")
  const latency = /^latency average = ([\d.]+) ms/m.exec(result.stdout ?? "")
  if (result.status !== 0 || !tps || !latency) {
    throw new Error(`pgbench failed (${result.status}):\n${result.stdout}\n${result.stderr}`)
  }
  return { tps: Number(tps[1]), latencyMs: Number(latency[1]) }
}

const quote = (text: string) => `'${text.replaceAll("'", "''")}'`

/**
 * Creates the server-side append function, then runs it and the plain INSERT with pgbench `runs` times each,
 * interleaved, `seconds` each: the medians and the ratio of medians (function over INSERT). Returns undefined, saying
 * why, when pgbench is not installed.
 */
export const measure = (
  sql: SqlClient.SqlClient,
  target: PgbenchTarget,
  sample: { readonly type: string; readonly dataJson: string; readonly metaJson: string },
  runs: number,
  seconds: number
) =>
  Effect.gen(function*() {
    if (ChildProcess.spawnSync("pgbench", ["--version"]).status !== 0) {
      console.log("Postgres alone: skipped, pgbench is not installed (apt-get install postgresql-client)")
      return undefined
    }
    yield* sql.unsafe(`
      create function bench_server_append(s text) returns void language plpgsql as $$
      declare
        pos bigint; h bytea; i uuid := gen_random_uuid(); v integer; t timestamptz := clock_timestamp();
        d jsonb := ${quote(sample.dataJson)}; m jsonb := ${quote(sample.metaJson)};
      begin
        perform pg_advisory_xact_lock(${APPEND_LOCK_KEY});
        select e.position, e.hash into pos, h from events e order by e.position desc limit 1;
        h := coalesce(h, decode(repeat('00', 32), 'hex'));
        pos := coalesce(pos, 0) + 1;
        v := coalesce((select sh.version from stream_heads sh where sh.stream = s), 0) + 1;
        insert into events (position, id, stream, version, workspace_id, type, data, meta, recorded_at, prev_hash, hash)
          values (pos, i, s, v, null, ${quote(sample.type)}, d, m, t, h,
                  connect_event_hash(h, pos, i, s, v, null, ${quote(sample.type)}, d, m, t));
        insert into stream_heads (stream, workspace_id, version, last_position, last_type, event_count, updated_at)
          values (s, null, v, pos, ${quote(sample.type)}, 1, t)
          on conflict (stream) do update set version = excluded.version, last_position = excluded.last_position,
            last_type = excluded.last_type, event_count = stream_heads.event_count + 1, updated_at = excluded.updated_at;
      end
      $$`)
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-bench-pgbench-"))
    try {
      const fn = Path.join(dir, "append.sql")
      const insert = Path.join(dir, "insert.sql")
      Fs.writeFileSync(fn, `\\set r random(1, 100)\nselect bench_server_append('pgbench-' || :r);\n`)
      Fs.writeFileSync(
        insert,
        `insert into baseline_events (id, stream, version, workspace_id, type, data, meta, recorded_at, prev_hash, hash) ` +
          `values (gen_random_uuid(), gen_random_uuid()::text, 1, null, ${quote(sample.type)}, ` +
          `${quote(sample.dataJson)}, ${quote(sample.metaJson)}, now(), '\\x07', '\\x07');\n`
      )
      const inserts: Array<Run> = []
      const appends: Array<Run> = []
      for (let r = 0; r < runs; r++) {
        inserts.push(runPgbench(target, insert, seconds))
        appends.push(runPgbench(target, fn, seconds))
      }
      const ratios = appends.map((a, r) => a.tps / inserts[r]!.tps)
      return {
        callers: 1,
        "INSERT tps": median(inserts.map((x) => x.tps)),
        "INSERT ms": median(inserts.map((x) => x.latencyMs)),
        "server-side append tps": median(appends.map((x) => x.tps)),
        "server-side append ms": median(appends.map((x) => x.latencyMs)),
        ratio: median(ratios),
        "ratio min..max": `${Math.min(...ratios).toFixed(2)}..${Math.max(...ratios).toFixed(2)}`
      }
    } finally {
      Fs.rmSync(dir, { recursive: true, force: true })
    }
  })
