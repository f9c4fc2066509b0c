/**
 * `npm run bench -- link [--json [FILE]] [--quick]`: requests per second and p50/p99 latency of small GETs at 1 and 32
 * concurrent keep-alive clients, to one node HTTP service three ways in one run: directly, through nginx as a reverse
 * proxy (Debian's `nginx`, installed when missing; run as a child process with its own config on 127.0.0.1), and
 * through a public link (client → hub → relay stream → agent → service; real `connect` processes on a fresh database
 * of the machine's Postgres, `TEST_DATABASE_URL`). Targets take turns within each run; figures are medians of 3 runs
 * of 5 s (1 run of 3 s with --quick) with their min–max, and the CPU time per request of each process involved
 * (/proc/PID/stat: the service, nginx's master and workers, the hub, the agent, the bench database's Postgres
 * backends), which holds on a loaded machine where throughput does not. Afterwards every request the link answered is
 * looked for on the log (`LinkAccessed`), and the connections the hub opened to the service (`TunnelOpened`) counted.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import pg from "pg"
import { median, printTable, writeJson } from "./Report.ts"

const here = Path.dirname(new URL(import.meta.url).pathname)
const root = Path.join(here, "..", "..")
const children: Array<ChildProcess.ChildProcess> = []

/** Spawns a process; resolves with the first match of `pattern` on its stdout/stderr (and all output so far). */
const spawn = (command: string, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv, pattern?: RegExp) => {
  const child = ChildProcess.spawn(command, args, { env, stdio: ["ignore", "pipe", "pipe"] })
  children.push(child)
  let output = ""
  const matched = new Promise<RegExpMatchArray>((resolve, reject) => {
    const check = () => {
      const m = pattern ? pattern.exec(output) : null
      if (m) resolve(m)
    }
    child.stdout!.on("data", (d: Buffer) => {
      output += d.toString()
      check()
    })
    child.stderr!.on("data", (d: Buffer) => {
      output += d.toString()
      check()
    })
    child.once("exit", (code) => reject(new Error(`${command} ${args.join(" ")} exited with ${code}:\n${output}`)))
  })
  // Only a caller waiting for its pattern cares that the process ended first.
  matched.catch(() => {})
  return { child, matched, output: () => output }
}

const ts = (file: string, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = process.env, pattern?: RegExp) =>
  spawn(process.execPath, ["--import", "tsx", Path.join(here, file), ...args], env, pattern)

const connectCli = (home: string, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = {}, nodeArgs: ReadonlyArray<string> = []) =>
  spawn(process.execPath, [...nodeArgs, Path.join(root, "bin", "connect.js"), ...args], {
    ...process.env,
    CONNECT_HOME: home,
    ...env
  })

const exited = (p: ReturnType<typeof spawn>) =>
  new Promise<string>((resolve, reject) => {
    p.child.once("exit", (code) => (code === 0 ? resolve(p.output()) : reject(new Error(`exit ${code}: ${p.output()}`))))
  })

const freePort = () =>
  new Promise<number>((resolve) => {
    const server = Net.createServer()
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as Net.AddressInfo).port
      server.close(() => resolve(port))
    })
  })

const waitForPort = async (port: number, ms: number) => {
  const until = Date.now() + ms
  while (Date.now() < until) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = Net.connect({ port, host: "127.0.0.1" }, () => (s.destroy(), resolve(true)))
      s.once("error", () => resolve(false))
    })
    if (ok) return
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`nothing listens on ${port}`)
}

/** CPU time (user + system, ms) a process has used so far; 0 once it is gone. */
const cpuMs = (pid: number): number => {
  try {
    // Fields after the command (which may hold spaces) start at state; utime and stime are the 12th and 13th of them.
    const fields = Fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ").pop()!.split(" ")
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS
  } catch {
    return 0
  }
}

const TICKS = Number(ChildProcess.spawnSync("getconf", ["CLK_TCK"]).stdout?.toString().trim()) || 100

/** The pids of `pid`'s children (nginx's workers). */
const childrenOf = (pid: number): Array<number> =>
  Fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d)).map(Number).filter((p) => {
    try {
      return Number(Fs.readFileSync(`/proc/${p}/stat`, "utf8").split(") ").pop()!.split(" ")[1]) === pid
    } catch {
      return false
    }
  })

/** CPU ms of each named group of processes, summed over the group's pids (asked for again at each reading). */
const readCpu = (groups: Record<string, () => Promise<ReadonlyArray<number>> | ReadonlyArray<number>>) =>
  Promise.all(Object.entries(groups).map(async ([name, pids]) => [name, (await pids()).reduce((n, p) => n + cpuMs(p), 0)] as const))
    .then((entries) => Object.fromEntries(entries) as Record<string, number>)

/** nginx from Debian's package: `apt-get update` once, then `apt-get install -y nginx`, when it is not installed. */
const ensureNginx = () => {
  if (Fs.existsSync("/usr/sbin/nginx")) return
  console.log("installing nginx (apt-get update; apt-get install -y nginx) ...")
  ChildProcess.spawnSync("apt-get", ["update"], { stdio: "ignore" })
  const status = ChildProcess.spawnSync("apt-get", ["install", "-y", "nginx"], { stdio: "ignore", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } }).status
  if (status !== 0 || !Fs.existsSync("/usr/sbin/nginx")) throw new Error("could not install nginx")
}

/** nginx in front of `target` on a free port, as a child process with its own config and temp files. */
const startNginx = async (dir: string, target: number) => {
  const port = await freePort()
  for (const d of ["body", "proxy", "fastcgi", "uwsgi", "scgi"]) Fs.mkdirSync(Path.join(dir, d), { recursive: true, mode: 0o777 })
  const config = Path.join(dir, "nginx.conf")
  Fs.writeFileSync(config, `
worker_processes 2;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  upstream service { server 127.0.0.1:${target}; keepalive 64; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://service;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $remote_addr;
    }
  }
}
`)
  const nginx = spawn("/usr/sbin/nginx", ["-c", config, "-p", dir, "-g", "daemon off;"], process.env)
  await waitForPort(port, 10_000)
  return { port, pids: () => [nginx.child.pid!, ...childrenOf(nginx.child.pid!)] }
}

interface Sample {
  readonly ok: number
  readonly rps: number
  readonly p50: number
  readonly p99: number
  readonly statuses: Record<string, number>
  readonly all: number
  /** CPU ms per request answered, by process group (the load client's own is not counted). */
  cpu?: Record<string, number>
}

const load = async (url: string, concurrency: number, seconds: number): Promise<Sample> => {
  const p = ts("link-load.ts", [url, String(concurrency), String(seconds)])
  return JSON.parse((await exited(p)).trim().split("\n").pop()!) as Sample
}

/** Sets up the hub, agent, link and database; returns the link's URL and id and a count of its requests on the log. */
export const setUpLink = async (dir: string, servicePort: number, profileDir: string | undefined, hubNodeArgs: ReadonlyArray<string> = []) => {
  const admin = process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres"
  const name = `connect_link_bench_${process.pid}_${Date.now()}`
  const adminClient = new pg.Client({ connectionString: admin })
  await adminClient.connect()
  await adminClient.query(`create database "${name}"`)
  // Profiling: every statement of the bench database goes to the server's log with its duration.
  if (profileDir) await adminClient.query(`alter database "${name}" set log_min_duration_statement = 0`)
  await adminClient.end()
  const url = new URL(admin)
  url.pathname = `/${name}`
  const databaseUrl = url.toString()
  // At warn, as nginx runs with access_log off: at info the hub writes an operational log line per request
  // (ObservedLog), which cost it ~30% of its CPU per request at 32 clients (12.4 against 8.7 ms, load average 12).
  const hub = connectCli(Path.join(dir, "hub"), ["hub", "--port", "0", "--log-level", "warn"], { DATABASE_URL: databaseUrl },
    [...(profileDir ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : []), ...hubNodeArgs])
  hub.matched.catch(() => {})
  const listening = await new Promise<string>((resolve, reject) => {
    const timer = setInterval(() => {
      const m = /connect hub listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(hub.output())
      const key = /^\s+(pc_[0-9A-Za-z]{32,})\s*$/m.exec(hub.output())
      if (m && key) {
        clearInterval(timer)
        resolve(`${m[1]} ${key[1]}`)
      }
    }, 100)
    hub.child.once("exit", () => (clearInterval(timer), reject(new Error(`the hub exited: ${hub.output()}`))))
  })
  const [hubUrl, apiKey] = listening.split(" ") as [string, string]
  const agentHome = Path.join(dir, "agent")
  // In the foreground, as a child of this bench: a loaded machine may take longer than `--detach` waits.
  const agent = connectCli(agentHome, ["up", "--hub", hubUrl, "--api-key", apiKey])
  // Both timers are cleared either way: a pending one kept the bench's event loop alive for 5 min after its report.
  await new Promise<void>((resolve, reject) => {
    const poll = setInterval(() => {
      if (!/connected to http/.test(agent.output())) return
      clearInterval(poll)
      clearTimeout(limit)
      resolve()
    }, 200)
    const limit = setTimeout(() => {
      clearInterval(poll)
      reject(new Error(`the agent did not connect in 300 s: ${agent.output()}`))
    }, 300_000)
  })
  await exited(connectCli(agentHome, ["expose", `127.0.0.1:${servicePort}`, "--name", "bench"]))
  const created = JSON.parse(
    await exited(connectCli(Path.join(dir, "cli"), ["link", "create", "bench", "--hub", hubUrl, "--rate-limit", "1000000/min", "--json"], {
      CONNECT_API_KEY: apiKey
    }))
  ) as { url: string; linkId: string }
  const onLog = async () => {
    const client = new pg.Client({ connectionString: databaseUrl })
    await client.connect()
    const { rows } = await client.query(
      `select coalesce(sum(coalesce((data->>'count')::int, 1)), 0)::int as n from events
        where type = 'LinkAccessed' and data->>'linkId' = $1 and data->>'outcome' = 'allowed'`,
      [created.linkId]
    )
    const tunnels = await client.query(
      `select count(*)::int as n from events where type = 'TunnelOpened' and data->>'viaLinkId' = $1`,
      [created.linkId]
    )
    await client.end()
    return { requests: rows[0].n as number, tunnels: tunnels.rows[0].n as number }
  }
  const stop = async () => {
    agent.child.kill("SIGTERM")
    hub.child.kill("SIGTERM")
    await new Promise((r) => hub.child.once("exit", r))
    const c = new pg.Client({ connectionString: admin })
    await c.connect()
    await c.query(`drop database if exists "${name}" with (force)`)
    await c.end()
  }
  /** The pids of the bench database's Postgres backends (the hub's pool, its writer, its listener). */
  const backends = async () => {
    const client = new pg.Client({ connectionString: admin })
    await client.connect()
    const { rows } = await client.query(`select pid from pg_stat_activity where datname = $1`, [name])
    await client.end()
    return rows.map((r) => Number(r.pid))
  }
  return { url: created.url, onLog, stop, hubPid: hub.child.pid!, agentPid: agent.child.pid!, backends, hubOutput: hub.output }
}

const spread = (xs: ReadonlyArray<number>) =>
  xs.length === 1 ? xs[0]! : `${median(xs).toFixed(median(xs) >= 100 ? 0 : 2)} (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})`

export const main = async (args: ReadonlyArray<string>) => {
  const quick = args.includes("--quick")
  const runs = quick ? 1 : 3
  const seconds = quick ? 3 : 5
  const option = (name: string) => {
    const i = args.indexOf(name)
    return i === -1 ? undefined : args[i + 1]
  }
  // --profile DIR: the hub runs with --cpu-prof into DIR; --only link,nginx and --clients 1,32 narrow the run.
  const profileDir = option("--profile")
  const names = option("--only")?.split(",") ?? ["direct", "nginx", "link"]
  const clientCounts = option("--clients")?.split(",").map(Number) ?? [1, 32]
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-bench-link-"))
  Fs.chmodSync(dir, 0o755)
  let link: Awaited<ReturnType<typeof setUpLink>> | undefined
  try {
    ensureNginx()
    const target = ts("link-target.ts", [], process.env, /\{"port":(\d+)\}/)
    const servicePort = Number((await target.matched)[1])
    const nginx = await startNginx(Path.join(dir, "nginx"), servicePort)
    link = await setUpLink(dir, servicePort, profileDir && Path.resolve(profileDir))
    const targets: Record<string, string> = {
      direct: `http://127.0.0.1:${servicePort}/x`,
      nginx: `http://127.0.0.1:${nginx.port}/x`,
      link: `${link.url}x`
    }
    const servicePid = target.child.pid!
    const { hubPid, agentPid, backends } = link
    const groups: Record<string, Parameters<typeof readCpu>[0]> = {
      direct: { service: () => [servicePid] },
      nginx: { service: () => [servicePid], nginx: nginx.pids },
      link: { service: () => [servicePid], hub: () => [hubPid], agent: () => [agentPid], postgres: backends }
    }
    const results: Record<string, Record<number, Array<Sample>>> = { direct: { 1: [], 32: [] }, nginx: { 1: [], 32: [] }, link: { 1: [], 32: [] } }
    let linkAnswered = 0
    for (let run = 0; run < runs; run++) {
      for (const concurrency of clientCounts) {
        for (const name of names) {
          const before = await readCpu(groups[name]!)
          const sample = await load(targets[name]!, concurrency, seconds)
          const after = await readCpu(groups[name]!)
          sample.cpu = Object.fromEntries(Object.keys(after).map((k) => [k, (after[k]! - (before[k] ?? 0)) / Math.max(1, sample.all)]))
          results[name]![concurrency]!.push(sample)
          if (name === "link") linkAnswered += sample.all
          process.stdout.write(`run ${run + 1}/${runs} ${name} c=${concurrency}: ${sample.rps.toFixed(0)} req/s, p50 ${sample.p50.toFixed(2)} ms, p99 ${sample.p99.toFixed(2)} ms, CPU ms/request ${Object.entries(sample.cpu).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(", ")}${Object.keys(sample.statuses).length ? ` other ${JSON.stringify(sample.statuses)}` : ""}\n`)
        }
      }
    }
    const rows = []
    for (const concurrency of clientCounts) {
      for (const name of names) {
        const samples = results[name]![concurrency]!
        rows.push({
          target: name,
          clients: concurrency,
          "req/s": spread(samples.map((s) => s.rps)),
          "p50 ms": spread(samples.map((s) => s.p50)),
          "p99 ms": spread(samples.map((s) => s.p99)),
          "CPU ms/req": Object.keys(samples[0]!.cpu ?? {}).map((k) => `${k} ${median(samples.map((s) => s.cpu![k]!)).toFixed(3)}`).join(", ")
        })
      }
    }
    printTable(`Public link vs nginx vs direct (small GET, keep-alive; medians of ${runs} × ${seconds} s, min–max)`, [
      "target",
      "clients",
      "req/s",
      "p50 ms",
      "p99 ms",
      "CPU ms/req"
    ], rows)
    const at32 = (name: string, key: "rps" | "p99") => median((results[name]?.[32] ?? []).map((s) => s[key]))
    const ratio = at32("link", "rps") / at32("nginx", "rps")
    const p99ratio = at32("link", "p99") / at32("nginx", "p99")
    if (Number.isFinite(ratio)) {
      console.log(`\nat 32 clients: link/nginx requests/s ${ratio.toFixed(2)}× (target ≥ 0.5×), p99 ${p99ratio.toFixed(2)}× (target ≤ 3×)`)
    }
    // Records are appended in the background once each answer is done: wait for them to land.
    let logged = 0
    let tunnels = 0
    for (let i = 0; i < 120 && logged < linkAnswered; i++) {
      ;({ requests: logged, tunnels } = await link.onLog())
      if (logged < linkAnswered) await new Promise((r) => setTimeout(r, 500))
    }
    console.log(`link requests answered 200: ${linkAnswered}; LinkAccessed (allowed) on the log: ${logged}; ` +
      `connections the hub opened to the service (TunnelOpened): ${tunnels}`)
    console.log(`load average: ${Os.loadavg().map((l) => l.toFixed(2)).join(" ")} (${Os.cpus().length} CPUs; others share this machine)`)
    writeJson(args, "link", { runs, seconds, results, ratio, p99ratio, linkAnswered, logged, tunnels, loadavg: Os.loadavg() })
  } finally {
    await link?.stop().catch((e) => console.error(String(e)))
    for (const child of children) if (child.exitCode === null) child.kill("SIGTERM")
    Fs.rmSync(dir, { recursive: true, force: true })
  }
}
