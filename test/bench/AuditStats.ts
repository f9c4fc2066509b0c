/**
 * The `--stats` rows of `npm run bench -- audit`: on the bench's log, the first catch-up of the rollups (what the first
 * `connect audit --stats` next to a stopped hub pays), then per case the answer as the CLI gets it (the catch-up's
 * check, nothing to apply, then PgStats.query) against the same statements over GROUP BY views on `events`
 * (test/support/StatsBaseline.ts), both timed in the same run: median and min–max, and the ratio of the medians.
 * Targets: ≤ 1 s, and ≥ 20× faster than the baseline.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import * as PgStats from "../../audit/PgStats.ts"
import type { StatsOptions } from "../../audit/Stats.ts"
import * as StatsProjection from "../../audit/StatsProjection.ts"
import * as ProjectionRunner from "../../hub/eventlog/ProjectionRunner.ts"
import * as StatsBaseline from "../support/StatsBaseline.ts"
import { median, printTable } from "./Report.ts"

const timed = <A, E, R>(effect: Effect.Effect<A, E, R>, runs: number) =>
  Effect.gen(function*() {
    const times: Array<number> = []
    let result: A | undefined
    for (let i = 0; i < runs; i++) {
      const t = performance.now()
      result = yield* effect
      times.push(performance.now() - t)
    }
    return { times, result: result! }
  })

const ms = (xs: ReadonlyArray<number>) => `${median(xs).toFixed(1)} (${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)})`

/** Times `--stats` over the log in context (`workspace`: one of its workspaces), `runs` times, the baseline `baselineRuns`. */
export const run = (options: { readonly runs: number; readonly baselineRuns: number; readonly workspace: string }) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const started = performance.now()
    const reached = yield* ProjectionRunner.catchUp(StatsProjection.projection, { batchSize: 10_000 })
    const catchUpMs = performance.now() - started
    yield* sql.unsafe(`analyze audit_rollup_hourly, audit_rollup_ips, audit_rollup_span, audit_rollup_names`)
    const [size] = yield* sql.unsafe<{ hourly: number; ips: number; span: number }>(
      `select (select count(*) from audit_rollup_hourly)::int as hourly, (select count(*) from audit_rollup_ips)::int as ips,
              (select count(*) from audit_rollup_span)::int as span`
    )
    yield* StatsBaseline.create
    const now = Date.now()
    const cases: ReadonlyArray<[string, StatsOptions]> = [
      ["--stats", { limit: 50, reveal: false }],
      ["--stats --since 7d --by agent", { limit: 50, reveal: false, by: "agent", since: new Date(now - 7 * 86_400_000) }],
      ["--stats --workspace ID --reveal-ips", { limit: 50, reveal: true, workspace: options.workspace }]
    ]
    const rows: Array<Record<string, unknown>> = []
    for (const [label, stats] of cases) {
      // As the CLI answers: the catch-up finds nothing to apply, then the query.
      const cli = Effect.zipRight(ProjectionRunner.catchUp(StatsProjection.projection), PgStats.query(stats))
      yield* timed(cli, 3)
      const fast = yield* timed(cli, options.runs)
      yield* timed(StatsBaseline.query(stats), 1)
      const slow = yield* timed(StatsBaseline.query(stats), options.baselineRuns)
      // The same answer both ways, or the comparison means nothing.
      if (JSON.stringify(fast.result) !== JSON.stringify(slow.result)) {
        return yield* Effect.dieMessage(`${label}: the rollups and the GROUP BY over events disagree`)
      }
      rows.push({
        case: label,
        events: fast.result.events,
        "--stats ms": ms(fast.times),
        "GROUP BY ms": ms(slow.times),
        "×": median(slow.times) / median(fast.times)
      })
    }
    printTable(
      `connect audit --stats over ${reached} events: rollups (${options.runs} runs) vs GROUP BY over events ` +
        `(${options.baselineRuns} runs), median (min–max); first catch-up ${(catchUpMs / 1000).toFixed(1)} s; ` +
        `rollup rows: ${size!.hourly} hourly, ${size!.ips} addresses, ${size!.span} spans (targets: ≤ 1000 ms, ≥ 20×)`,
      Object.keys(rows[0]!),
      rows
    )
    return { catchUpMs, rollupRows: size, cases: rows }
  })
