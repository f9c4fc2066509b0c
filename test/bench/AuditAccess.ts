/**
 * The access rows of `npm run bench -- audit`: `connect audit access` (audit/PgAccess.ts, what the CLI runs) for one
 * service at several instants of the log, p50/p99, and how many events its reads fold against the events before
 * that instant.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import * as PgAccess from "../../audit/PgAccess.ts"
import { percentile, printTable } from "./Report.ts"

/** Times `runs` answers for `service` of `workspace` at each of `at` (label, ISO time); prints and returns the rows. */
export const run = (options: {
  readonly runs: number
  readonly service: string
  readonly workspace: string
  readonly at: ReadonlyArray<readonly [string, string]>
}) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows: Array<Record<string, unknown>> = []
    for (const [label, iso] of options.at) {
      const query = { service: options.service, workspace: options.workspace, at: new Date(iso) }
      for (let i = 0; i < 3; i++) yield* PgAccess.read(query)
      const times: Array<number> = []
      let answer = yield* PgAccess.read(query)
      for (let i = 0; i < options.runs; i++) {
        const started = performance.now()
        answer = yield* PgAccess.read(query)
        times.push(performance.now() - started)
      }
      const [{ n }] = (yield* sql.unsafe<{ n: string }>(`select count(*)::text as n from events where position <= $1`, [answer.asOf.position])) as [{ n: string }]
      rows.push({ at: label, "as of position": answer.asOf.position, "events before": Number(n), agents: answer.agents.length, "p50 ms": percentile(times, 50), "p99 ms": percentile(times, 99), "max ms": Math.max(...times) })
    }
    printTable(`connect audit access --service ${options.service} --workspace … --at T (${options.runs} runs each)`, Object.keys(rows[0]!), rows)
    return rows
  })
