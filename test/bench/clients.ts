/**
 * `npm run bench -- clients [--json [FILE]] [--quick] [--seconds N] [--rounds N] [--clients N] [--compare DIR]`: a real database
 * client through real tunnels. pgbench (select-only, `-S`, and a new connection per transaction, `-S -C`; 8 clients)
 * against the machine's Postgres, in one run, over every path a user could pick: direct, one socat forwarder, three
 * socat forwarders in a row (the relay's four TCP hops without framing), `ssh -L` through a throwaway sshd, and a real
 * `connect hub` with two real agents (`connect up`, `connect expose`, `connect reach`, through bin/connect and its
 * tuning) per transport. Paths are interleaved round by round so that the load of a shared machine weighs on all of
 * them alike; figures are medians over the rounds with their min–max, and ratios are taken to `ssh -L` in the same run.
 * `--compare DIR` also runs the relay of another checkout (its bin/connect, e.g. the commit before a change) in the same
 * rounds, so that a change is measured against its baseline under the same load. A run that carried no transaction
 * (on a loaded machine 8 tunnels can take longer to open than a run lasts) counts as 0 tps, and is reported as such.
 *
 * The database server is `BENCH_PG_URL` (default postgres://postgres@127.0.0.1:5432/postgres, trust auth); pgbench's
 * tables live in a database of their own (connect_bench_pgbench, `pgbench -i -s 2`), and the hub's event log in
 * another, dropped at the end.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import pg from "pg"
import { spawn, type Spawned } from "../support/processes.ts"
import { ensureTools, have, socatForward, started, startSshForward, stopAll } from "./Anchors.ts"
import { median, printTable, writeJson } from "./Report.ts"

const here = Path.dirname(new URL(import.meta.url).pathname)
const ownLauncher = Path.join(here, "../../bin/connect")

/** The hub's line saying where it listens: its URL. */
const LISTENING = /connect hub listening on (http:\/\/127\.0\.0\.1:\d+)/
/** The admin API key a hub prints once, on its first start. */
const API_KEY = /^\s+(pc_[0-9A-Za-z]{32,})\s*$/m
/** An agent's line once connected. */
const CONNECTED = /connected to (\S+) as (\S+) \(workspace (\S+)\)/

const arg = (args: ReadonlyArray<string>, name: string): string | undefined => {
  const i = args.indexOf(`--${name}`)
  return i < 0 ? undefined : args[i + 1]
}

/** One pgbench run's figures. */
interface Run {
  readonly tps: number
  readonly latencyMs: number
}

/** Runs pgbench against 127.0.0.1:`port`; the figures it printed. */
const pgbench = (
  server: URL,
  database: string,
  port: number,
  options: { readonly seconds: number; readonly clients: number; readonly reconnect: boolean }
): Run => {
  const args = [
    "-h", "127.0.0.1", "-p", String(port), "-U", server.username || "postgres", "-n", "-S",
    "-c", String(options.clients), "-j", "2", "-T", String(options.seconds),
    ...(options.reconnect ? ["-C"] : []),
    database
  ]
  const result = ChildProcess.spawnSync("pgbench", args, { encoding: "utf8", timeout: (options.seconds + 60) * 1000 })
  if (result.status === 0 && /^number of transactions actually processed: 0$/m.test(result.stdout ?? "")) {
    return { tps: 0, latencyMs: Number.NaN }
  }
  const tps = /^tps = ([\d.]+)/m.exec(result.stdout ?? "")
  const latency = /^latency average = ([\d.]+) ms/m.exec(result.stdout ?? "")
  if (result.status !== 0 || !tps || !latency) {
    throw new Error(`pgbench through port ${port} failed (${result.status}):\n${result.stdout}\n${result.stderr}`)
  }
  return { tps: Number(tps[1]), latencyMs: Number(latency[1]) }
}

/** Runs SQL on the server's maintenance database. */
const admin = async (server: URL, statements: ReadonlyArray<string>) => {
  const client = new pg.Client({ connectionString: server.toString() })
  await client.connect()
  try {
    for (const statement of statements) await client.query(statement)
  } finally {
    await client.end()
  }
}

const withDatabase = (server: URL, database: string) => {
  const url = new URL(server.toString())
  url.pathname = `/${database}`
  return url.toString()
}

/** Runs `connect ARGS` through bin/connect with `CONNECT_HOME=home`, tracked for the end of the bench. */
const connect = (
  launcher: string,
  home: string,
  args: ReadonlyArray<string>,
  extra: NodeJS.ProcessEnv = {}
): Spawned => {
  const env: NodeJS.ProcessEnv = { ...process.env, CONNECT_HOME: home, ...extra }
  delete env.CONNECT_ALLOW_INSECURE
  if (extra.DATABASE_URL === undefined) delete env.DATABASE_URL
  const spawned = spawn(launcher, args, { env, cwd: Path.dirname(Path.dirname(launcher)) })
  started.push(spawned.child)
  return spawned
}

/** Runs a short `connect` command to its end; throws when it fails. */
const command = async (launcher: string, home: string, args: ReadonlyArray<string>): Promise<string> => {
  const cli = connect(launcher, home, args)
  // Generous: on a loaded 2-core machine one `connect` command took over a minute to start.
  const exit = await cli.exited(300_000)
  if (exit.code !== 0) throw new Error(`connect ${args.join(" ")} failed:\n${cli.stdout()}\n${cli.stderr()}`)
  return cli.stdout()
}

/** A real hub on its own database, and for each transport an exposing and a reaching agent; the reach ports. */
const startConnect = async (
  launcher: string,
  root: string,
  hubDatabaseUrl: string,
  target: number,
  transports: ReadonlyArray<string>
) => {
  const home = (name: string) => {
    const dir = Path.join(root, name)
    Fs.mkdirSync(dir, { recursive: true })
    return dir
  }
  const hub = connect(launcher, home("hub"), ["hub", "--port", "0"], { DATABASE_URL: hubDatabaseUrl })
  const url = (await hub.waitFor(LISTENING, 300_000))[1]!
  const apiKey = (await hub.waitFor(API_KEY, 30_000))[1]!
  const ports: Record<string, number> = {}
  const pids: Record<string, number> = { hub: hub.pid }
  for (const transport of transports) {
    const up = async (label: string) => {
      const dir = home(label)
      const agent = connect(launcher, dir, ["up", "--hub", url, "--api-key", apiKey, "--label", label, "--transport", transport])
      await agent.waitFor(CONNECTED, 300_000)
      pids[label] = agent.pid
      return dir
    }
    const service = `pg-${transport}`
    const exposer = await up(`expose-${transport}`)
    await command(launcher, exposer, ["expose", `127.0.0.1:${target}`, "--name", service])
    const reacher = await up(`reach-${transport}`)
    const reached = await command(launcher, reacher, ["reach", service, "--port", "0"])
    const port = new RegExp(`^${service} → 127\\.0\\.0\\.1:(\\d+)$`, "m").exec(reached)
    if (!port) throw new Error(`connect reach ${service} printed no port: ${reached}`)
    ports[transport] = Number(port[1])
  }
  return { ports, pids }
}

const spread = (xs: ReadonlyArray<number>) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs) })
type Spread = ReturnType<typeof spread>
const fmt = (s: Spread, digits = 0) => `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}–${s.max.toFixed(digits)})`

/** Runs the clients benchmark. */
export const main = async (args: ReadonlyArray<string>) => {
  const quick = args.includes("--quick")
  const seconds = Number(arg(args, "seconds") ?? (quick ? 4 : 8))
  const rounds = Number(arg(args, "rounds") ?? 3)
  const clients = Number(arg(args, "clients") ?? 8)
  const server = new URL(process.env.BENCH_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres")
  const serverPort = Number(server.port || 5432)
  const database = "connect_bench_pgbench"
  const hubDatabase = `connect_bench_hub_${process.pid}`
  const root = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-bench-clients-"))
  const load = () => Os.loadavg().map((l) => l.toFixed(2)).join(" ")
  const loadAtStart = load()
  const compare = arg(args, "compare")
  const hubDatabases: Array<string> = []
  const cleanup = async () => {
    await stopAll()
    for (const name of hubDatabases) await admin(server, [`drop database if exists ${name}`]).catch(() => {})
    Fs.rmSync(root, { recursive: true, force: true })
  }
  process.once("SIGINT", () => void cleanup().then(() => process.exit(130)))
  try {
    ensureTools([["pgbench", "postgresql-client"]])
    if (!have("pgbench")) throw new Error("pgbench is not installed (apt-get install postgresql-client)")
    await admin(server, [`drop database if exists ${database}`, `create database ${database}`])
    const init = ChildProcess.spawnSync(
      "pgbench",
      ["-i", "-q", "-s", "2", "-h", "127.0.0.1", "-p", String(serverPort), "-U", server.username || "postgres", database],
      { encoding: "utf8" }
    )
    if (init.status !== 0) throw new Error(`pgbench -i failed:\n${init.stderr}`)
    const relays = [{ label: "", launcher: ownLauncher }]
    if (compare) relays.push({ label: ` @${Path.basename(Path.resolve(compare))}`, launcher: Path.resolve(compare, "bin/connect") })

    const paths: Array<{ readonly name: string; readonly port: number; readonly relay?: boolean }> = [
      { name: "direct", port: serverPort }
    ]
    if (have("socat")) {
      paths.push({ name: "socat", port: await socatForward(serverPort) })
      paths.push({ name: "socat ×3 (4 hops)", port: await socatForward(await socatForward(await socatForward(serverPort))) })
    }
    const ssh = await startSshForward(serverPort).catch((error) => {
      console.error(`ssh -L anchor unavailable: ${error}`)
      return undefined
    })
    if (ssh !== undefined) paths.push({ name: "ssh -L", port: ssh })
    for (const [i, { label, launcher }] of relays.entries()) {
      const database = `${hubDatabase}_${i}`
      await admin(server, [`create database ${database}`])
      hubDatabases.push(database)
      const home = Path.join(root, `relay-${i}`)
      const relay = await startConnect(launcher, home, withDatabase(server, database), serverPort, ["msgpack", "tcp", "ws"])
      for (const [transport, port] of Object.entries(relay.ports)) {
        paths.push({ name: `connect ${transport}${label}`, port, relay: true })
      }
      console.log(`processes${label}: ${JSON.stringify(relay.pids)}`)
    }

    // One query through each relay first, timed: a tunnel that does not carry it within a minute fails the bench with
    // psql's own message, instead of pgbench reporting no transactions.
    const firstQueryMs: Record<string, number> = {}
    for (const path of paths.filter((p) => p.relay)) {
      const start = Date.now()
      const psql = ChildProcess.spawnSync(
        "psql",
        ["-h", "127.0.0.1", "-p", String(path.port), "-U", server.username || "postgres", "-tAc", "select 1", database],
        { encoding: "utf8", timeout: 60_000 }
      )
      if (psql.status !== 0) throw new Error(`psql through ${path.name} (port ${path.port}) failed: ${psql.stderr}`)
      firstQueryMs[path.name] = Date.now() - start
    }
    console.log(`first query (connect, authenticate, select 1) through each relay, ms: ${JSON.stringify(firstQueryMs)}`)

    // Warm-up: JIT and heaps of the relay's processes, and the server's caches, on every path (on a loaded machine the
    // first connections through a fresh relay can take longer than the warm-up itself: no figures are kept from it).
    for (const path of paths) {
      try {
        pgbench(server, database, path.port, { seconds: 3, clients, reconnect: false })
      } catch {
        // measured below
      }
    }

    const runs = new Map(paths.map((p) => [p.name, { select: [] as Array<Run>, reconnect: [] as Array<Run> }]))
    for (let round = 0; round < rounds; round++) {
      for (const reconnect of [false, true]) {
        for (const path of paths) {
          const run = pgbench(server, database, path.port, { seconds, clients, reconnect })
          runs.get(path.name)![reconnect ? "reconnect" : "select"].push(run)
          console.log(`round ${round + 1} ${path.name} -S${reconnect ? " -C" : ""}: ${run.tps.toFixed(0)} tps, ${run.latencyMs} ms`)
        }
      }
    }
    const loadAtEnd = load()

    const results = paths.map((path) => {
      const r = runs.get(path.name)!
      return {
        path: path.name,
        selectTps: spread(r.select.map((x) => x.tps)),
        selectLatencyMs: spread(r.select.map((x) => x.latencyMs).filter(Number.isFinite)),
        reconnectTps: spread(r.reconnect.map((x) => x.tps)),
        reconnectLatencyMs: spread(r.reconnect.map((x) => x.latencyMs).filter(Number.isFinite))
      }
    })
    const anchor = results.find((r) => r.path === "ssh -L")
    const ratio = (x: Spread, a: Spread | undefined) => (a ? (x.median / a.median).toFixed(2) : "—")
    printTable(
      `pgbench, ${clients} clients, ${seconds} s per run, median (min–max) of ${rounds} interleaved rounds; ` +
        `load average ${loadAtStart} at start, ${loadAtEnd} at end`,
      ["path", "-S tps", "-S latency ms", "-S ÷ ssh -L", "-S -C tps", "-S -C latency ms", "-S -C ÷ ssh -L"],
      results.map((r) => ({
        path: r.path,
        "-S tps": fmt(r.selectTps),
        "-S latency ms": fmt(r.selectLatencyMs, 2),
        "-S ÷ ssh -L": ratio(r.selectTps, anchor?.selectTps),
        "-S -C tps": fmt(r.reconnectTps),
        "-S -C latency ms": fmt(r.reconnectLatencyMs, 2),
        "-S -C ÷ ssh -L": ratio(r.reconnectTps, anchor?.reconnectTps)
      }))
    )
    writeJson(args, "clients", { clients, seconds, rounds, load: { start: loadAtStart, end: loadAtEnd }, firstQueryMs, results })
  } finally {
    await cleanup()
  }
}
