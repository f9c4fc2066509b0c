/**
 * The web console's rows of `npm run bench -- audit`: the server time of what the console asks first, through the
 * API's own handlers (audit/AuditApi.ts, audit/StatsApi.ts) as the hub runs them for a session — the read under the
 * key's scope (a workspace key through row-level security) and the `AuditRead` each answer appends. The audit log's
 * first page (`since=24h`, 50 rows, newest first: the console's default), the stats its Overview and Stats pages ask
 * (`since=7d`, by hour; by address) and the Overview's last verify run and checkpoint, for an operator key and a
 * workspace key. Targets: ≤ 500 ms for the log's page and the integrity read, ≤ 1 s for stats.
 * Runs after the stats rows, which caught the rollups up.
 */
import { Effect } from "effect"
import * as AuditApi from "../../audit/AuditApi.ts"
import * as StatsApi from "../../audit/StatsApi.ts"
import * as HubApi from "../../core/HubApi.ts"
import { uuidv7 } from "../../core/Ids.ts"
import { median, printTable } from "./Report.ts"

const callerOf = (scope: "operator" | "workspace", workspaceId: string) =>
  HubApi.ApiKeyCaller.of({
    apiKeyId: uuidv7(),
    workspaceId,
    scope,
    from: { ip: "127.0.0.1", userAgent: "bench" },
    outOfScope: (message) => Effect.fail(new HubApi.Forbidden({ message })),
    limited: (message) => Effect.fail(new HubApi.TooManyRequests({ message }))
  })

/** Times each console request `runs` times (after 3 warm-up runs) for both kinds of key on `workspace`. */
export const run = (options: { readonly runs: number; readonly workspace: string }) =>
  Effect.gen(function*() {
    const cases = [
      ["audit log, first page (since=24h, limit 50)", 500, AuditApi.events({ since: "24h", limit: 50 })],
      ["stats: overview (since=7d, by=hour)", 1000, StatsApi.stats({ since: "7d", by: "hour" })],
      ["overview: last verify and checkpoint", 500, AuditApi.integrity],
      ["stats: stats page (since=7d, by=ip)", 1000, StatsApi.stats({ since: "7d", by: "ip" })]
    ] as const
    const rows: Array<Record<string, unknown>> = []
    for (const scope of ["operator", "workspace"] as const) {
      const caller = callerOf(scope, options.workspace)
      for (const [label, target, request] of cases) {
        const once = Effect.provideService(request as Effect.Effect<unknown, unknown, HubApi.ApiKeyCaller | Exclude<Effect.Effect.Context<typeof request>, HubApi.ApiKeyCaller>>, HubApi.ApiKeyCaller, caller)
        for (let i = 0; i < 3; i++) yield* once
        const times: Array<number> = []
        for (let i = 0; i < options.runs; i++) {
          const t = performance.now()
          yield* once
          times.push(performance.now() - t)
        }
        rows.push({
          request: `${label}, ${scope} key`,
          "median ms": Number(median(times).toFixed(1)),
          "min ms": Number(Math.min(...times).toFixed(1)),
          "max ms": Number(Math.max(...times).toFixed(1)),
          "target ms": target
        })
      }
    }
    printTable(`web console: server time per request (API handler + AuditRead), ${options.runs} runs each`, Object.keys(rows[0]!), rows)
    return rows
  })
