/**
 * `npm run bench -- audit`: `connect audit`'s filtered query (audit/PgQuery.ts, the statement the CLI runs) over a
 * log of --events events (default 1,000,000), p50/p99 per filter; the target is 100 ms.
 *
 * Then `audit access` for one service at three instants (test/bench/AuditAccess.ts), `--stats` from its rollups
 * against the same answer by GROUP BY over events (test/bench/AuditStats.ts), and
 * `audit export` events/s per format against COPY … TO STDOUT of the same rows (test/bench/AuditExport.ts).
 *
 * Options: --json [FILE]  --events N  --runs N (timed queries per filter, default 30; --stats at most 20)
 * --baseline-runs N (timed GROUP BY answers per case, default 3)  --export-runs N (timed exports per format, default 3)
 * --database-url URL (default: embedded Postgres in a temporary directory, as the hub).
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Effect, Either, Layer, Redacted } from "effect"
import * as PgQuery from "../../audit/PgQuery.ts"
import * as AuditAccess from "./AuditAccess.ts"
import * as AuditConsole from "./AuditConsole.ts"
import { parseFilters, type RawFilters } from "../../audit/Query.ts"
import { EventLog } from "../../core/EventLog.ts"
import * as E from "../../core/Events.ts"
import { AgentId, LinkId, ServiceId, TunnelId, uuidv7, WorkspaceId } from "../../core/Ids.ts"
import * as Database from "../../hub/db/Database.ts"
import * as Migrations from "../../hub/db/Migrations.ts"
import * as PgEventLog from "../../hub/eventlog/PgEventLog.ts"
import * as AuditExport from "./AuditExport.ts"
import * as AuditStats from "./AuditStats.ts"
import * as AuditVerify from "./AuditVerify.ts"
import { percentile, printTable, writeJson } from "./Report.ts"

const flag = (args: ReadonlyArray<string>, name: string, fallback: number) => {
  const i = args.indexOf(name)
  return i >= 0 ? Number(args[i + 1]) : fallback
}

const WORKSPACES = Array.from({ length: 10 }, () => WorkspaceId.make(uuidv7()))
const AGENTS = Array.from({ length: 100 }, (_, i) => ({ id: AgentId.make(uuidv7()), label: `box-${i}`, workspace: WORKSPACES[i % 10]! }))
const SERVICES = Array.from({ length: 50 }, (_, i) => ({ id: ServiceId.make(uuidv7()), name: `svc-${i}`, agent: AGENTS[i]! }))
const HASH = "b".repeat(64) as E.Sha256Hex
const ipOf = (n: number) => `198.${18 + (n % 2)}.${Math.floor(n / 250) % 250}.${n % 250}`

/** The k-th event of an append by `agent`: mostly tunnels and connections, a few refusals, as a hub's log is. */
const eventOf = (k: number, agent: (typeof AGENTS)[number], service: (typeof SERVICES)[number], ip: string): E.Event => {
  const tunnelId = TunnelId.make(uuidv7())
  switch (k % 20) {
    case 0: return new E.AgentConnected({ agentId: agent.id, ip, userAgent: "connect-agent/0.1.0", transport: "ws" })
    case 1: return new E.AgentDisconnected({ agentId: agent.id, reason: "closed", durationMs: 1000 })
    case 2: return new E.ReachDenied({ requestedName: `nope-${k}`, fromAgentId: agent.id, reason: "not_found" })
    case 3: return new E.LinkAccessed({ linkId: LinkId.make(uuidv7()), ip, method: "GET", path: "/", status: k % 40 === 3 ? 403 : 200, outcome: k % 40 === 3 ? "denied" : "allowed", bytes: 10, durationMs: 1 })
    case 4: return k % 200 === 4 ? new E.AgentAuthFailed({ reason: "unknown_token", ip }) : new E.ShareAccessed({ shareId: uuidv7() as never, outcome: "allowed" })
    default:
      return k % 2 === 0
        ? new E.TunnelOpened({ tunnelId, serviceId: service.id, serviceName: service.name, fromAgentId: agent.id, toAgentId: service.agent.id })
        : new E.TunnelClosed({ tunnelId, serviceId: service.id, bytesUp: 100, bytesDown: 1000, durationMs: 50, reason: k % 97 === 0 ? "connect_failed" : "end" })
  }
}

export const main = async (args: ReadonlyArray<string>) => {
  const size = flag(args, "--events", 1_000_000)
  const runs = flag(args, "--runs", 30)
  const urlIndex = args.indexOf("--database-url")
  const databaseUrl = urlIndex >= 0 ? args[urlIndex + 1] : process.env.BENCH_DATABASE_URL
  const dataDir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-bench-"))
  Fs.chmodSync(dataDir, 0o755)

  const program = Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const pg = yield* PgClient.PgClient
    const name = `connect_bench_audit_${Date.now()}`
    yield* sql.unsafe(`create database ${name}`)
    yield* Effect.addFinalizer(() => sql.unsafe(`drop database if exists ${name} with (force)`).pipe(Effect.ignore))
    const cfg = pg.config
    const url = cfg.url ? new URL(Redacted.value(cfg.url)) : undefined
    if (url) url.pathname = `/${name}`
    const benchConfig: PgClient.PgClientConfig = { ...cfg, ...(url ? { url: Redacted.make(url.toString()) } : { database: name }), maxConnections: 40 }

    return yield* Effect.gen(function*() {
      yield* Migrations.run
      const log = yield* EventLog
      const bsql = yield* SqlClient.SqlClient
      const admin = new E.EventMeta({ actor: { kind: "admin" } })
      for (const a of AGENTS) {
        yield* log.append(`agent-${a.id}`, [new E.AgentProvisioned({ agentId: a.id, label: a.label, tokenHash: HASH, expiresAt: new Date(Date.now() + 86_400_000) })], { expectedVersion: "any", workspaceId: a.workspace, meta: admin })
      }
      for (const s of SERVICES) {
        yield* log.append(`service-${s.id}`, [new E.ServiceExposed({ serviceId: s.id, agentId: s.agent.id, name: s.name, targetHost: "127.0.0.1", targetPort: 5432 })], { expectedVersion: "any", workspaceId: s.agent.workspace, meta: admin })
      }
      const perAppend = 500
      const started = performance.now()
      let next = (yield* log.head).position
      let appendNo = 0
      yield* Effect.promise(() =>
        Promise.all(Array.from({ length: 8 }, async (_, c) => {
          while (next < size) {
            next += perAppend
            const n = appendNo++
            const agent = AGENTS[(n * 7) % AGENTS.length]!
            const service = SERVICES[n % SERVICES.length]!
            const ip = ipOf(n % 5000)
            await Effect.runPromise(log.append(`fill-${c}`, Array.from({ length: perAppend }, (_, k) => eventOf(k + n, agent, service, ip)), {
              expectedVersion: "any",
              workspaceId: agent.workspace,
              meta: new E.EventMeta({ actor: { kind: "agent", id: agent.id }, sourceIp: ip })
            }).pipe(
              // On a loaded machine the writer can refuse a batch whose clock estimate drifted (Unavailable); the
              // batch stored nothing, so it is appended again.
              Effect.retry({ times: 5, while: (e) => e._tag === "EventLogError" })
            ))
            if (n % 200 === 0) process.stdout.write(`  filling: ${next} / ${size} events\n`)
          }
        }))
      )
      const head = (yield* log.head).position
      console.log(`log holds ${head} events (fill ${Math.round(head / ((performance.now() - started) / 1000))} ev/s)`)
      yield* bsql.unsafe(`analyze events`)
      const at = (position: number) =>
        Effect.map(bsql.unsafe<{ t: Date }>(`select recorded_at as t from events where position = $1`, [position]), (r) => new Date(r[0]!.t).toISOString())
      const half = yield* at(Math.floor(head / 2))
      const tenth = yield* at(Math.floor(head / 10))
      const a = AGENTS[3]!
      const s = SERVICES[7]!
      const cases: ReadonlyArray<[string, RawFilters]> = [
        ["(none)", {}],
        ["--since (half the log)", { since: half }],
        ["--until (first tenth)", { until: tenth }],
        ["--type auth (rare)", { type: "auth" }],
        ["--type tunnel", { type: "tunnel" }],
        ["--workspace", { workspace: a.workspace }],
        ["--agent ID", { agent: a.id }],
        ["--agent LABEL", { agent: a.label }],
        ["--service NAME", { service: s.name }],
        ["--service ID", { service: s.id }],
        ["--outcome denied", { outcome: "denied" }],
        ["--outcome allowed", { outcome: "allowed" }],
        ["--ip ADDRESS", { ip: ipOf(1234) }],
        ["--ip PREFIX /24", { ip: "198.19.3.0/24" }],
        ["--type tunnel --agent LABEL --outcome denied --until", { type: "tunnel", agent: a.label, outcome: "denied", until: half }],
        ["--type auth --ip PREFIX --since", { type: "auth", ip: "198.18.0.0/16", since: tenth }]
      ]
      const rows: Array<Record<string, unknown>> = []
      for (const [label, raw] of cases) {
        const filters = Either.getOrThrow(parseFilters({ limit: 50, ...raw }, new Date()))
        const once = Effect.gen(function*() {
          const resolved = yield* PgQuery.resolve(filters)
          return yield* PgQuery.query(filters, resolved)
        })
        for (let i = 0; i < 3; i++) yield* once
        const times: Array<number> = []
        let found = 0
        for (let i = 0; i < runs; i++) {
          const t = performance.now()
          found = (yield* once).length
          times.push(performance.now() - t)
        }
        rows.push({ filter: label, rows: found, "p50 ms": percentile(times, 50), "p99 ms": percentile(times, 99), "max ms": Math.max(...times) })
      }
      printTable(`connect audit query over ${head} events, --limit 50, ${runs} runs each (target: 100 ms)`, Object.keys(rows[0]!), rows)
      const access = yield* AuditAccess.run({ runs, service: s.name, workspace: s.agent.workspace, at: [["a tenth in", tenth], ["half way", half], ["now", new Date().toISOString()]] })
      const stats = yield* AuditStats.run({ runs: Math.min(runs, 20), baselineRuns: flag(args, "--baseline-runs", 3), workspace: a.workspace })
      const consoleRows = yield* AuditConsole.run({ runs: Math.min(runs, 20), workspace: a.workspace })
      const verify = yield* AuditVerify.run({ runs: flag(args, "--verify-runs", 3), checks: 50 })
      const exports = yield* AuditExport.run({ runs: flag(args, "--export-runs", 3), batchSize: 1000 })
      return { events: head, runs, filters: rows, access, stats, console: consoleRows, verify, exports }
    }).pipe(Effect.provide(PgEventLog.layer().pipe(Layer.provideMerge(PgClient.layer(benchConfig)))))
  })

  const result = await Effect.runPromise(
    Effect.scoped(program).pipe(Effect.provide(Database.layerOwner({ dataDir, databaseUrl: databaseUrl || undefined })))
  ).finally(() => Fs.rmSync(dataDir, { recursive: true, force: true }))
  writeJson(args, "audit", { ...result, targets: { p99Ms: 100, statsMs: 1000, statsSpeedup: 20, consoleFirstPageMs: 500, consoleStatsMs: 1000 } })
}
