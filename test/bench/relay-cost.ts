/**
 * `npm run bench -- relay --cost [--json [FILE]] [--n N] [--parallel P] [--transport T] [--no-strace] [--code DIR]
 * [--perf DIR [--perf-parallel]] [--bulk-mb MB] [--anchor]`:
 * what one small request/reply costs at each of the five processes of a tunnel — the client (this process), the
 * reaching agent, the hub, the exposing agent and the server (the echo target). Unlike throughput, these figures hold
 * on a loaded machine: CPU time per round trip (utime + stime of /proc/PID/stat over N round trips, the client's from
 * process.cpuUsage), system calls per round trip (`strace -c -f -p PID` attached to every process for a separate
 * pass), and transport messages per round trip (WebSocket messages, a batch counting once, counted by the receivers).
 *
 * Two workloads of 64-byte messages through the echo target: one connection in lock-step (`seq`, N round trips, the
 * latency path: nothing can coalesce), and P connections in lock-step each (`par`, N round trips in all: the
 * request/reply cache benchmark's shape, where frames of several streams can share a read and a write). `--code DIR`
 * runs the relay of another checkout (its test/bench entry points, which must count messages as this one's do), to
 * measure a change against its baseline on the same machine.
 *
 * Bulk (`--bulk-mb MB`, default 64; 0 skips it): CPU ms per MB at each process for one upload and one download of MB
 * through the relay (after one of each to warm up), and for the three relay processes the share of it on threads other
 * than the main one (V8's garbage collector and compiler helpers): on a 2-core machine bulk throughput is bounded by
 * the sum over processes.
 * Anchor (`--anchor`): three plain Node forwarders in a row (relay-forwarder.ts, bytes moved as read, no framing) in
 * place of the relay, `seq` only: what the latency path costs per process with three Node processes and no relay.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { stopAll } from "./Anchors.ts"
import { printTable, writeJson } from "./Report.ts"
import { launcherTuning, node, type Proc } from "./relay-processes.ts"
import { download, upload } from "./relay.ts"

const arg = (args: ReadonlyArray<string>, name: string): string | undefined => {
  const i = args.indexOf(`--${name}`)
  return i < 0 ? undefined : args[i + 1]
}

const TICK_US = 1e6 / 100

/** utime + stime of every thread of `pid`, dead ones included, in µs (clock ticks of 10 ms). */
const cpuOf = (pid: number): number => {
  const stat = Fs.readFileSync(`/proc/${pid}/stat`, "utf8")
  // Fields after the command name, which may hold spaces, start at its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return (Number(fields[11]) + Number(fields[12])) * TICK_US
}

/** CPU µs of every thread of `pid` (as `cpuOf`, live threads only) and of the threads other than the main one. */
const threadsCpu = (pid: number): { readonly all: number; readonly offMain: number } => {
  let all = 0
  let offMain = 0
  for (const tid of Fs.readdirSync(`/proc/${pid}/task`)) {
    let stat: string
    try {
      stat = Fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8")
    } catch {
      continue
    }
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    const us = (Number(fields[11]) + Number(fields[12])) * TICK_US
    all += us
    if (Number(tid) !== pid) offMain += us
  }
  return { all, offMain }
}

const selfCpu = () => {
  const u = process.cpuUsage()
  return u.user + u.system
}

const connect = (port: number) =>
  new Promise<Net.Socket>((resolve, reject) => {
    const socket = Net.connect({ port, host: "127.0.0.1", noDelay: true })
    socket.once("connect", () => resolve(socket))
    socket.once("error", reject)
  })

const message = Buffer.alloc(64, 0x42)

/** An echo connection through `port` that answers `count` 64-byte round trips in lock-step. */
const echoing = async (port: number) => {
  const socket = await connect(port)
  socket.write("E")
  let pending = 0
  let left = 0
  let done: () => void = () => {}
  socket.on("data", (c: Buffer) => {
    pending -= c.byteLength
    if (pending > 0) return
    if (--left === 0) return done()
    pending = message.byteLength
    socket.write(message)
  })
  return {
    run: (count: number) =>
      new Promise<void>((resolve) => {
        done = resolve
        left = count
        pending = message.byteLength
        socket.write(message)
      }),
    close: () => socket.destroy()
  }
}

type Echo = Awaited<ReturnType<typeof echoing>>

/** Runs `total` round trips over `echoes` (split evenly), each connection in lock-step. */
const roundTrips = (echoes: ReadonlyArray<Echo>, total: number) =>
  Promise.all(echoes.map((e) => e.run(Math.ceil(total / echoes.length))))

/** The processes of one relay, by role. */
interface Relay {
  readonly hub: Proc
  readonly exposer: Proc
  readonly reacher: Proc
  readonly port: number
}

const ROLES = ["client", "reacher", "hub", "exposer", "server"] as const
type Role = (typeof ROLES)[number]

/** Transport messages received so far: by the hub (from both agents), by the exposer and by the reacher. */
const messages = async (relay: Relay) => ({
  hub: Number((await relay.hub.ask("stats")).received),
  exposer: Number((await relay.exposer.ask("stats")).received),
  reacher: Number((await relay.reacher.ask("stats")).received)
})

/** CPU µs per round trip at each process, and transport messages per round trip, over `n` round trips. */
const measureCpu = async (relay: Relay, pids: Record<Role, number>, echoes: ReadonlyArray<Echo>, n: number) => {
  const before = await messages(relay)
  const cpu0 = Object.fromEntries(ROLES.map((r) => [r, r === "client" ? selfCpu() : cpuOf(pids[r])]))
  const start = process.hrtime.bigint()
  await roundTrips(echoes, n)
  const elapsed = Number(process.hrtime.bigint() - start) / 1e3
  const cpu = Object.fromEntries(
    ROLES.map((r) => [r, ((r === "client" ? selfCpu() : cpuOf(pids[r])) - cpu0[r]!) / n])
  ) as Record<Role, number>
  const after = await messages(relay)
  return {
    cpu,
    wallUsPerRoundTrip: elapsed / n,
    messages: {
      toHub: (after.hub - before.hub) / n,
      toExposer: (after.exposer - before.exposer) / n,
      toReacher: (after.reacher - before.reacher) / n
    }
  }
}

const RELAY_ROLES = ["reacher", "hub", "exposer"] as const
const BULK_WARM_MB = 160

/**
 * CPU ms per MB at each process for an upload and a download of `mb` MB, MB/s of each, and the share of each relay
 * process's CPU spent off its main thread.
 */
const measureBulk = async (port: number, pids: Record<Role, number>, mb: number) => {
  const result: Record<string, { mbps: number; msPerMB: Record<Role, number>; offMain: Record<string, number> }> = {}
  // Warm-up of the bulk paths (64 KiB frames, congestion, window grants), which the 64 B round trips leave cold. After
  // 64 MB each way V8's optimizing compiler still took over half of the relay processes' CPU on its helper threads
  // (perf: TurboFan's graph reducers); in one run after 120 MB, ~15%. So the warm-up is BULK_WARM_MB, whatever the
  // size measured.
  await upload(port, BULK_WARM_MB * 1e6)
  await download(port, BULK_WARM_MB * 1e6)
  for (const [direction, run] of [["up", upload], ["down", download]] as const) {
    const cpu0 = Object.fromEntries(ROLES.map((r) => [r, r === "client" ? selfCpu() : cpuOf(pids[r])]))
    const threads0 = Object.fromEntries(RELAY_ROLES.map((r) => [r, threadsCpu(pids[r])]))
    const mbps = await run(port, mb * 1e6)
    const msPerMB = Object.fromEntries(
      ROLES.map((r) => [r, ((r === "client" ? selfCpu() : cpuOf(pids[r])) - cpu0[r]!) / 1e3 / mb])
    ) as Record<Role, number>
    const offMain = Object.fromEntries(RELAY_ROLES.map((r) => {
      const t = threadsCpu(pids[r])
      const all = t.all - threads0[r]!.all
      return [r, all > 0 ? (t.offMain - threads0[r]!.offMain) / all : 0]
    }))
    result[direction] = { mbps, msPerMB, offMain }
  }
  return result
}

/** Three plain Node forwarders in a row to the echo target: CPU µs per `seq` round trip of each, and the wall time. */
const measureAnchor = async (start: (file: string, a: ReadonlyArray<string>) => Promise<Proc>, n: number) => {
  // This folder's entry points, also with --code (another checkout may have no forwarder).
  const server = await start("relay-target.ts", [])
  let port = Number(server.first.port)
  const forwarders: Array<Proc> = []
  for (let i = 0; i < 3; i++) {
    const f = await start("relay-forwarder.ts", ["--to", String(port)])
    forwarders.push(f)
    port = Number(f.first.port)
  }
  const one = [await echoing(port)]
  await roundTrips(one, 2_000)
  const pids = forwarders.map((f) => f.child.pid!)
  const cpu0 = pids.map(cpuOf)
  const self0 = selfCpu()
  const server0 = cpuOf(server.child.pid!)
  const t0 = process.hrtime.bigint()
  await roundTrips(one, n)
  const wall = Number(process.hrtime.bigint() - t0) / 1e3 / n
  const result = {
    wallUsPerRoundTrip: wall,
    client: (selfCpu() - self0) / n,
    forwarders: pids.map((pid, i) => (cpuOf(pid) - cpu0[i]!) / n),
    server: (cpuOf(server.child.pid!) - server0) / n
  }
  one[0]!.close()
  await stopAll()
  return result
}

/** `strace -c` summary of one process: calls per syscall. */
const parseStrace = (text: string): Record<string, number> => {
  const calls: Record<string, number> = {}
  for (const line of text.split("\n")) {
    const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$/.exec(line)
    if (m && m[2] !== "total") calls[m[2]!] = Number(m[1])
  }
  return calls
}

/** System calls per round trip at each process over `n` round trips, every process traced at once. */
const measureSyscalls = async (pids: Record<Role, number>, echoes: ReadonlyArray<Echo>, n: number) => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "smallmsg-strace-"))
  const tracers = ROLES.map((role) => {
    const file = Path.join(dir, role)
    const child = ChildProcess.spawn("strace", ["-c", "-f", "-o", file, "-p", String(pids[role])], { stdio: "ignore" })
    return { role, file, child, exited: new Promise((r) => child.once("exit", r)) }
  })
  // strace attaches to every thread before it counts; half a second is plenty on an idle process.
  await new Promise((r) => setTimeout(r, 500))
  await roundTrips(echoes, n)
  for (const t of tracers) t.child.kill("SIGINT")
  await Promise.all(tracers.map((t) => t.exited))
  const result = {} as Record<Role, { total: number; top: string }>
  for (const t of tracers) {
    const calls = parseStrace(Fs.readFileSync(t.file, "utf8"))
    const perRt = Object.entries(calls).map(([name, c]) => [name, c / n] as const).sort((a, b) => b[1] - a[1])
    result[t.role] = {
      total: perRt.reduce((s, [, c]) => s + c, 0),
      top: perRt.filter(([, c]) => c >= 0.05).map(([name, c]) => `${name} ${c.toFixed(2)}`).join(", ")
    }
  }
  Fs.rmSync(dir, { recursive: true, force: true })
  return result
}

/**
 * `perf record` of the three relay processes over `n` round trips of `seq` (of `par` with `--perf-parallel`), with
 * node's --perf-basic-prof so JavaScript frames are named, to DIR/ROLE.data: where each one spends its time, for
 * `perf report -i`.
 */
const profile = async (pids: Record<Role, number>, echoes: ReadonlyArray<Echo>, n: number, dir: string) => {
  Fs.mkdirSync(dir, { recursive: true })
  const recorders = (["reacher", "hub", "exposer"] as const).map((role) => {
    const child = ChildProcess.spawn("perf", ["record", "-F", "2000", "-g", "-o", Path.join(dir, `${role}.data`), "-p", String(pids[role])], {
      stdio: "ignore"
    })
    return { child, exited: new Promise((r) => child.once("exit", r)) }
  })
  await new Promise((r) => setTimeout(r, 500))
  await roundTrips(echoes, n)
  for (const r of recorders) r.child.kill("SIGINT")
  await Promise.all(recorders.map((r) => r.exited))
}

/** Runs the cost benchmark. */
export const main = async (args: ReadonlyArray<string>) => {
  const n = Number(arg(args, "n") ?? 20_000)
  const parallel = Number(arg(args, "parallel") ?? 16)
  const transports = arg(args, "transport") ? [arg(args, "transport")!] : ["msgpack", "ws"]
  const dir = arg(args, "code") ? Path.resolve(arg(args, "code")!, "test/bench") : undefined
  const strace = !args.includes("--no-strace")
  const bulkMb = Number(arg(args, "bulk-mb") ?? 64)
  const perfDir = arg(args, "perf")
  const tuning = launcherTuning()
  const env = { ...process.env, GLIBC_TUNABLES: tuning.tunables }
  const flags = perfDir ? [...tuning.nodeFlags, "--perf-basic-prof"] : tuning.nodeFlags
  const start = (file: string, a: ReadonlyArray<string>) => node(file, a, flags, env, dir)
  const results: Record<string, unknown> = { loadBefore: Os.loadavg() }
  const rows: Array<Record<string, unknown>> = []
  const bulkRows: Array<Record<string, unknown>> = []
  try {
    for (const transport of transports) {
      const server = await start("relay-target.ts", [])
      const hub = await start("relay-hub.ts", [])
      const url = String(hub.first.url)
      const agent = (token: string, role: ReadonlyArray<string>) =>
        start("relay-agent.ts", ["--url", url, "--transport", transport, "--token", token, ...role])
      const exposer = await agent("a".repeat(64), ["--expose", `bench=127.0.0.1:${Number(server.first.port)}`])
      const reacher = await agent("b".repeat(64), ["--reach", "bench"])
      const relay: Relay = { hub, exposer, reacher, port: Number(reacher.first.port) }
      const pids: Record<Role, number> = {
        client: process.pid,
        reacher: reacher.child.pid!,
        hub: hub.child.pid!,
        exposer: exposer.child.pid!,
        server: server.child.pid!
      }
      const one = [await echoing(relay.port)]
      const many = await Promise.all(Array.from({ length: parallel }, () => echoing(relay.port)))
      // Warm-up: JIT and heaps at working size on both paths.
      await roundTrips(one, 2_000)
      await roundTrips(many, 4_000)
      const seq = await measureCpu(relay, pids, one, n)
      const par = await measureCpu(relay, pids, many, n)
      const bulk = bulkMb > 0 ? await measureBulk(relay.port, pids, bulkMb) : undefined
      const sys = strace ? await measureSyscalls(pids, one, Math.min(n, 5_000)) : undefined
      const sysPar = strace ? await measureSyscalls(pids, many, Math.min(n, 5_000)) : undefined
      if (perfDir) await profile(pids, args.includes("--perf-parallel") ? many : one, n, Path.join(perfDir, transport))
      for (const e of [...one, ...many]) e.close()
      await stopAll()
      results[transport] = { seq, par, bulk, syscallsSeq: sys, syscallsPar: sysPar }
      if (bulk) {
        for (const role of ROLES) {
          const off = (d: "up" | "down") =>
            role in bulk[d]!.offMain ? `${(100 * bulk[d]!.offMain[role]!).toFixed(0)}%` : ""
          bulkRows.push({
            transport,
            process: role,
            "CPU ms/MB up": bulk.up!.msPerMB[role],
            "off main thread up": off("up"),
            "CPU ms/MB down": bulk.down!.msPerMB[role],
            "off main thread down": off("down")
          })
        }
        bulkRows.push({
          transport,
          process: "all",
          "CPU ms/MB up": ROLES.reduce((s, r) => s + bulk.up!.msPerMB[r], 0),
          "off main thread up": `${bulk.up!.mbps.toFixed(0)} MB/s`,
          "CPU ms/MB down": ROLES.reduce((s, r) => s + bulk.down!.msPerMB[r], 0),
          "off main thread down": `${bulk.down!.mbps.toFixed(0)} MB/s`
        })
      }
      for (const role of ROLES) {
        rows.push({
          transport,
          process: role,
          "CPU µs/rt seq": seq.cpu[role],
          [`CPU µs/rt ×${parallel}`]: par.cpu[role],
          "syscalls/rt seq": sys?.[role].total ?? "—",
          [`syscalls/rt ×${parallel}`]: sysPar?.[role].total ?? "—",
          "syscalls seq (per rt)": sys?.[role].top ?? ""
        })
      }
      rows.push({
        transport,
        process: "all",
        "CPU µs/rt seq": ROLES.reduce((s, r) => s + seq.cpu[r], 0),
        [`CPU µs/rt ×${parallel}`]: ROLES.reduce((s, r) => s + par.cpu[r], 0),
        "syscalls/rt seq": sys ? ROLES.reduce((s, r) => s + sys[r].total, 0) : "—",
        [`syscalls/rt ×${parallel}`]: sysPar ? ROLES.reduce((s, r) => s + sysPar[r].total, 0) : "—",
        "syscalls seq (per rt)": `wall ${seq.wallUsPerRoundTrip.toFixed(0)} µs/rt seq, ${par.wallUsPerRoundTrip.toFixed(0)} ×${parallel}; ` +
          `messages/rt seq: to hub ${seq.messages.toHub.toFixed(2)}, to exposer ${seq.messages.toExposer.toFixed(2)}, ` +
          `to reacher ${seq.messages.toReacher.toFixed(2)}; ×${parallel}: ${par.messages.toHub.toFixed(2)}, ` +
          `${par.messages.toExposer.toFixed(2)}, ${par.messages.toReacher.toFixed(2)}`
      })
    }
    if (args.includes("--anchor")) {
      const anchor = await measureAnchor((file, a) => node(file, a, flags, env), n)
      results.anchor = anchor
      const cells: Array<readonly [string, number]> = [
        ["client", anchor.client],
        ...anchor.forwarders.map((c, i) => [`node forwarder ${i + 1}`, c] as const),
        ["server", anchor.server]
      ]
      for (const [process, cpu] of cells) rows.push({ transport: "node ×3", process, "CPU µs/rt seq": cpu })
      rows.push({
        transport: "node ×3",
        process: "all",
        "CPU µs/rt seq": cells.reduce((s, [, c]) => s + c, 0),
        "syscalls seq (per rt)": `wall ${anchor.wallUsPerRoundTrip.toFixed(0)} µs/rt seq`
      })
    }
    results.loadAfter = Os.loadavg()
    printTable(
      `Cost of a 64 B round trip per process (n=${n}; load average ${Os.loadavg().map((l) => l.toFixed(1)).join(" ")})`,
      ["transport", "process", "CPU µs/rt seq", `CPU µs/rt ×${parallel}`, "syscalls/rt seq", `syscalls/rt ×${parallel}`, "syscalls seq (per rt)"],
      rows
    )
    if (bulkRows.length > 0) {
      printTable(
        `Bulk: CPU per MB per process, ${bulkMb} MB each way (load average ${Os.loadavg().map((l) => l.toFixed(1)).join(" ")})`,
        ["transport", "process", "CPU ms/MB up", "off main thread up", "CPU ms/MB down", "off main thread down"],
        bulkRows
      )
    }
    writeJson(args, "relay-cost", { n, parallel, code: dir ?? "here", results })
  } finally {
    await stopAll()
  }
}
