/**
 * `npm run bench -- eventlog`: append throughput and latency of the group-commit writer against one INSERT per
 * transaction measured in the same run, then `verify` and projection `rebuild` over a large log.
 *
 * Two baselines, each a plain INSERT per transaction through a node-postgres pool: into a table with the same columns
 * and indexes as `events` (`like events including defaults including indexes`: no trigger, no function, no hash), the
 * one the ratio is taken against; and into a bare table (position, id, stream, type, data, meta, time), for scale.
 * Each run alternates the three in 0.5 s slices, so that all see the same load on a noisy machine.
 * Then, as the ceiling of the 1-caller row, Postgres alone (EventlogServerFloor.ts): pgbench running the whole append in
 * one server-side function against pgbench running the baseline's INSERT.
 *
 * Options: --json [FILE]  --seconds S (per measurement and run, default 4)  --runs N (default 3)  --events N
 * (verify/rebuild log size, default 1,000,000)  --database-url URL (default: embedded Postgres in a temporary
 * directory, as the hub)  --rt (as root: for the 1-caller row, run this process and the bench database's backends
 * SCHED_FIFO, so that other load on the machine does not decide the latency; all three contenders get it alike. Not
 * for the concurrent rows: 64 FIFO backends on 2 cores starve each other's lock holders, which measured the plain
 * INSERTs at a sixth of their normal rate).
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Redacted, Schema } from "effect"
import Pg from "pg"
import { verify } from "../../audit/Verify.ts"
import { EventLog } from "../../core/EventLog.ts"
import { EventMeta, TunnelClosed } from "../../core/Events.ts"
import { encodeEvent } from "../../core/Events.ts"
import { TunnelId, ServiceId, uuidv7 } from "../../core/Ids.ts"
import * as Database from "../../hub/db/Database.ts"
import * as Migrations from "../../hub/db/Migrations.ts"
import * as PgEventLog from "../../hub/eventlog/PgEventLog.ts"
import * as ProjectionRunner from "../../hub/eventlog/ProjectionRunner.ts"
import * as StreamHeads from "../../hub/readmodels/StreamHeads.ts"
import * as ServerFloor from "./EventlogServerFloor.ts"
import { median, percentile, printTable, writeJson } from "./Report.ts"

const flag = (args: ReadonlyArray<string>, name: string, fallback: number) => {
  const i = args.indexOf(name)
  return i >= 0 ? Number(args[i + 1]) : fallback
}

const meta = new EventMeta({
  actor: { kind: "agent", id: "0193a3c1-7f2e-7c3a-9b1d-2f4e5a6b7c8d" },
  sourceIp: "203.0.113.77",
  userAgent: "connect-agent/0.1.0 (linux x64)",
  hubId: "hub-bench-1"
})

/** A TunnelClosed with its meta: about 300 bytes of JSON, like the events the relay writes most. */
const sampleEvent = () =>
  new TunnelClosed({
    tunnelId: TunnelId.make(uuidv7()),
    serviceId: ServiceId.make("0193a3c1-7f2e-7c3a-9b1d-aaaaaaaaaaaa"),
    bytesUp: 123_456,
    bytesDown: 9_876_543,
    durationMs: 4_321,
    reason: "end"
  })

const encodeMeta = Schema.encodeSync(EventMeta)

const STREAMS = 100

interface Measurement {
  readonly events: number
  readonly seconds: number
  readonly latenciesMs: Array<number>
}

/**
 * Runs `callers` loops of `op` for `seconds`, recording each call's latency. The callers are fibers of one Effect
 * runtime, as the hub's relay and API fibers are, for the baseline as for the event log.
 */
const drive = (
  callers: number,
  seconds: number,
  op: (caller: number, i: number) => Effect.Effect<unknown, unknown>
): Effect.Effect<Measurement, unknown> =>
  Effect.suspend(() => {
    const latencies: Array<number> = []
    const started = performance.now()
    const deadline = started + seconds * 1000
    const loop = (c: number, i: number): Effect.Effect<void, unknown> =>
      Effect.suspend(() => {
        if (performance.now() >= deadline) return Effect.void
        const t = performance.now()
        return Effect.flatMap(op(c, i), () => {
          latencies.push(performance.now() - t)
          return loop(c, i + 1)
        })
      })
    return Effect.forEach(Array.from({ length: callers }, (_, c) => c), (c) => loop(c, 0), {
      concurrency: "unbounded",
      discard: true
    }).pipe(
      Effect.map(() => ({ events: latencies.length, seconds: (performance.now() - started) / 1000, latenciesMs: latencies }))
    )
  })

/** Slices of one measurement, added up. */
const merge = (parts: ReadonlyArray<Measurement>): Measurement => ({
  events: parts.reduce((n, m) => n + m.events, 0),
  seconds: parts.reduce((n, m) => n + m.seconds, 0),
  latenciesMs: parts.flatMap((m) => m.latenciesMs)
})

/**
 * Runs each of `ops` for `seconds` in all, in alternating slices of half a second, so that every contender sees the
 * same machine: one measurement per op.
 */
const interleave = (
  callers: number,
  seconds: number,
  ops: ReadonlyArray<(caller: number, i: number) => Effect.Effect<unknown, unknown>>
): Effect.Effect<Array<Measurement>, unknown> =>
  Effect.gen(function* () {
    const slices = Math.max(1, Math.round(seconds / 0.5))
    const parts: Array<Array<Measurement>> = ops.map(() => [])
    for (let k = 0; k < slices; k++) {
      for (let o = 0; o < ops.length; o++) parts[o]!.push(yield* drive(callers, seconds / slices, ops[o]!))
    }
    return parts.map(merge)
  })

/** Moves a process to the real-time FIFO class (`--rt`), so that the other load on the machine waits for it, or back. */
const realtime = (pid: number, on: boolean) =>
  ChildProcess.spawnSync("chrt", on ? ["-f", "-p", "50", String(pid)] : ["-o", "-p", "0", String(pid)]).status === 0

const summarize = (m: Measurement) => ({
  eventsPerSec: m.events / m.seconds,
  p50Ms: percentile(m.latenciesMs, 50),
  p99Ms: percentile(m.latenciesMs, 99)
})

export const main = async (args: ReadonlyArray<string>) => {
  const seconds = flag(args, "--seconds", 4)
  const runs = flag(args, "--runs", 3)
  const bigLog = flag(args, "--events", 1_000_000)
  const urlIndex = args.indexOf("--database-url")
  const databaseUrl = urlIndex >= 0 ? args[urlIndex + 1] : process.env.BENCH_DATABASE_URL
  const dataDir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-bench-"))
  Fs.chmodSync(dataDir, 0o755)

  const program = Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const pg = yield* PgClient.PgClient
    // A fresh database on the server, so the figures never include someone else's log.
    const name = `connect_bench_${Date.now()}`
    yield* sql.unsafe(`create database ${name}`)
    yield* Effect.addFinalizer(() => sql.unsafe(`drop database if exists ${name} with (force)`).pipe(Effect.ignore))
    const cfg = pg.config
    // A URL names its own database and wins over `database`, so the fresh database goes into the URL when there is one.
    const url = cfg.url ? new URL(Redacted.value(cfg.url)) : undefined
    if (url) url.pathname = `/${name}`
    const benchConfig: PgClient.PgClientConfig = {
      ...cfg,
      ...(url ? { url: Redacted.make(url.toString()) } : { database: name }),
      maxConnections: 70
    }
    const settings = yield* sql.unsafe<{ name: string; setting: string }>(
      `select name, setting from pg_settings where name in ('fsync', 'synchronous_commit', 'full_page_writes', 'server_version')`
    )
    const server = Object.fromEntries(settings.map((s) => [s.name, s.setting]))
    console.log(`postgres ${server.server_version}: fsync=${server.fsync} synchronous_commit=${server.synchronous_commit}`)
    const sample = encodeEvent(sampleEvent())
    const eventBytes = JSON.stringify(sample.data).length + JSON.stringify(encodeMeta(meta)).length
    console.log(`event payload: ${sample.type}, ${eventBytes} bytes of JSON (data + meta)`)

    return yield* Effect.gen(function* () {
      yield* Migrations.run
      const log = yield* EventLog
      const bsql = yield* SqlClient.SqlClient
      // Baselines: one INSERT per transaction, through a plain node-postgres pool, into the same columns and indexes
      // as events (no trigger, no hash, no function), and into a bare table.
      yield* bsql.unsafe(`create sequence baseline_position`)
      yield* bsql.unsafe(`create table baseline_events (like events including defaults including indexes)`)
      yield* bsql.unsafe(`alter table baseline_events alter position set default nextval('baseline_position')`)
      yield* bsql.unsafe(`create table bare_events (position bigint generated always as identity primary key,
        id uuid not null unique, stream text not null, type text not null, data jsonb not null, meta jsonb not null,
        recorded_at timestamptz not null default clock_timestamp())`)
      const pool = new Pg.Pool({
        ...(url
          ? { connectionString: url.toString() }
          : {
            host: cfg.host,
            port: cfg.port,
            user: cfg.username,
            database: name,
            ...(cfg.password ? { password: Redacted.value(cfg.password) } : {})
          }),
        max: 64,
        // Kept open: --rt moves their backends once.
        idleTimeoutMillis: 0
      })
      // An idle client told to go (the bench database dropped, the embedded server stopping) emits an error on the
      // pool; unhandled, it ended the run after the tables were printed and before the JSON was written.
      pool.on("error", () => undefined)
      yield* Effect.addFinalizer(() => Effect.promise(() => pool.end()))
      const dataJson = JSON.stringify(sample.data)
      const metaJson = JSON.stringify(encodeMeta(meta))
      const hash = Buffer.alloc(32, 7)
      const versions = new Map<string, number>()
      const baselineOp = (c: number) =>
        Effect.promise(() => {
          const stream = `tunnel-${c % STREAMS}`
          const version = (versions.get(stream) ?? 0) + 1
          versions.set(stream, version)
          return pool.query(
            `insert into baseline_events (id, stream, version, workspace_id, type, data, meta, recorded_at, prev_hash, hash)
             values ($1, $2, $3, null, $4, $5, $6, now(), $7, $8)`,
            [uuidv7(), stream, version, sample.type, dataJson, metaJson, hash, hash]
          )
        })
      const bareOp = (c: number) =>
        Effect.promise(() =>
          pool.query(`insert into bare_events (id, stream, type, data, meta) values ($1, $2, $3, $4, $5)`, [
            uuidv7(),
            `tunnel-${c % STREAMS}`,
            sample.type,
            dataJson,
            metaJson
          ])
        )
      const groupOp = (c: number, i: number) =>
        log.append(`tunnel-${(c * 7919 + i) % STREAMS}`, [sampleEvent()], {
          expectedVersion: "any",
          workspaceId: null,
          meta
        })

      // Every connection the bench will use is open before their backends are moved: the pool's and the writer's.
      const rt = args.includes("--rt")
      const pids = rt
        ? yield* Effect.gen(function* () {
          yield* Effect.promise(() => Promise.all(Array.from({ length: 64 }, () => pool.query("select pg_sleep(0.05)"))))
          yield* groupOp(0, 0)
          const rows = yield* bsql.unsafe<{ pid: number }>(`select pid from pg_stat_activity where datname = current_database()`)
          return [process.pid, ...rows.map((r) => r.pid)]
        })
        : []
      const setRealtime = (on: boolean) => {
        const moved = pids.filter((pid) => realtime(pid, on)).length
        if (on) console.log(`--rt: this process and ${moved - 1} backends run SCHED_FIFO for the 1-caller row`)
      }
      const range = (xs: ReadonlyArray<number>) => `${Math.round(Math.min(...xs))}..${Math.round(Math.max(...xs))}`
      const rows: Array<Record<string, unknown>> = []
      for (const callers of [1, 16, 64]) {
        const base: Array<ReturnType<typeof summarize>> = []
        const bare: Array<ReturnType<typeof summarize>> = []
        const group: Array<ReturnType<typeof summarize>> = []
        const ratios: Array<number> = []
        if (rt) setRealtime(callers === 1)
        for (let r = 0; r < runs; r++) {
          const [b, g, bb] = yield* interleave(callers, seconds, [baselineOp, groupOp, bareOp])
          base.push(summarize(b!))
          group.push(summarize(g!))
          bare.push(summarize(bb!))
          ratios.push(group[r]!.eventsPerSec / base[r]!.eventsPerSec)
        }
        const row = {
          callers,
          "baseline ev/s": median(base.map((x) => x.eventsPerSec)),
          "baseline p50 ms": median(base.map((x) => x.p50Ms)),
          "baseline p99 ms": median(base.map((x) => x.p99Ms)),
          "group ev/s": median(group.map((x) => x.eventsPerSec)),
          "group ev/s min..max": range(group.map((x) => x.eventsPerSec)),
          "group p50 ms": median(group.map((x) => x.p50Ms)),
          "group p99 ms": median(group.map((x) => x.p99Ms)),
          ratio: median(ratios),
          "ratio min..max": `${Math.min(...ratios).toFixed(2)}..${Math.max(...ratios).toFixed(2)}`,
          "bare ev/s": median(bare.map((x) => x.eventsPerSec)),
          "ratio to bare": median(group.map((x) => x.eventsPerSec)) / median(bare.map((x) => x.eventsPerSec))
        }
        rows.push(row)
        console.log(`  ${callers} callers: group ${Math.round(row["group ev/s"])} ev/s, baseline ${Math.round(row["baseline ev/s"])} ev/s, bare ${Math.round(row["bare ev/s"])} ev/s`)
      }
      printTable(
        `Appends of one ~${eventBytes} B event, ${runs} runs x ${seconds} s interleaved, medians (hash chain + inline stream_heads projection on; baseline: plain INSERT into the same columns and indexes; bare: into a bare table)`,
        Object.keys(rows[0]!),
        rows
      )

      // The most any writer could reach at one caller here: the whole append done by Postgres, driven by pgbench.
      const pgbenchTarget: ServerFloor.PgbenchTarget = {
        env: url
          ? {
            PGHOST: url.hostname,
            PGPORT: url.port || "5432",
            PGUSER: decodeURIComponent(url.username),
            PGPASSWORD: decodeURIComponent(url.password),
            PGDATABASE: name
          }
          : {
            ...(cfg.host ? { PGHOST: cfg.host } : {}),
            ...(cfg.port ? { PGPORT: String(cfg.port) } : {}),
            ...(cfg.username ? { PGUSER: cfg.username } : {}),
            ...(cfg.password ? { PGPASSWORD: Redacted.value(cfg.password) } : {}),
            PGDATABASE: name
          }
      }
      const floor = yield* ServerFloor.measure(bsql, pgbenchTarget, { type: sample.type, dataJson, metaJson }, runs, seconds)
      if (floor) {
        printTable(
          `Postgres alone at 1 caller (pgbench, C client; ${runs} runs x ${seconds} s interleaved, medians): the whole append in one server-side function vs the baseline's INSERT`,
          Object.keys(floor),
          [floor]
        )
      }

      // Grow the log to `bigLog` events with large appends, then time verify and rebuild over all of it.
      let head = (yield* log.head).position
      const before = head
      const fillStarted = performance.now()
      const perAppend = 50
      yield* Effect.promise(async () => {
        let next = head
        let lastReport = performance.now()
        await Promise.all(
          Array.from({ length: 32 }, async (_, c) => {
            while (next < bigLog) {
              next += perAppend
              await Effect.runPromise(
                log.append(
                  `fill-${c}`,
                  Array.from({ length: perAppend }, sampleEvent),
                  { expectedVersion: "any", workspaceId: null, meta }
                )
              )
              if (performance.now() - lastReport > 5000) {
                lastReport = performance.now()
                process.stdout.write(`  filling: ${next} / ${bigLog} events\n`)
              }
            }
          })
        )
      })
      const fillSeconds = (performance.now() - fillStarted) / 1000
      head = (yield* log.head).position
      const filled = head
      console.log(
        head === before
          ? `log holds ${head} events (no fill needed)`
          : `log holds ${head} events (fill: ${Math.round((head - before) / fillSeconds)} ev/s in appends of ${perAppend})`
      )

      const verifyTimes: Array<number> = []
      const independentTimes: Array<number> = []
      const rebuildTimes: Array<number> = []
      for (let r = 0; r < Math.min(runs, 2); r++) {
        const v0 = performance.now()
        const result = yield* verify()
        verifyTimes.push((performance.now() - v0) / 1000)
        if (!result.ok) throw new Error(`verify failed: ${result.message}`)
        const i0 = performance.now()
        const independent = yield* verify({ independent: true })
        independentTimes.push((performance.now() - i0) / 1000)
        if (!independent.ok) throw new Error(`verify --independent failed: ${independent.message}`)
        const r0 = performance.now()
        const replayed = yield* ProjectionRunner.rebuild(StreamHeads.projection)
        rebuildTimes.push((performance.now() - r0) / 1000)
        if (replayed !== filled) throw new Error(`rebuild replayed ${replayed}, expected ${filled}`)
      }
      const big = [
        { operation: "verify (Postgres hashes)", events: filled, "seconds (median)": median(verifyTimes), "events/s": filled / median(verifyTimes) },
        { operation: "verify --independent", events: filled, "seconds (median)": median(independentTimes), "events/s": filled / median(independentTimes) },
        { operation: "rebuild stream_heads", events: filled, "seconds (median)": median(rebuildTimes), "events/s": filled / median(rebuildTimes) }
      ]
      printTable(`Over the whole log (${Math.min(runs, 2)} runs, medians)`, Object.keys(big[0]!), big)
      return { server, eventBytes, appends: rows, postgresAlone: floor ?? null, fill: { events: filled, seconds: fillSeconds }, whole: big }
    }).pipe(
      Effect.provide(
        PgEventLog.layer({ inline: [StreamHeads.projection] }).pipe(
          Layer.provideMerge(PgClient.layer(benchConfig))
        )
      )
    )
  })

  const result = await Effect.runPromise(
    Effect.scoped(program).pipe(
      Effect.provide(Database.layerOwner({ dataDir, databaseUrl: databaseUrl || undefined }))
    )
  ).finally(() => Fs.rmSync(dataDir, { recursive: true, force: true }))
  writeJson(args, "eventlog", {
    ...result,
    targets: { eventsPerSec64: 20_000, p99Ms64: 20, verifyPerSec: 200_000, rebuildPerSec: 50_000 }
  })
}
