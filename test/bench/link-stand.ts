/**
 * A standing public-link setup for measuring one change at a time (not part of `npm run bench`): the bench's service,
 * hub, agent and link (link.ts setUpLink), then `--rounds` rounds of `--clients` keep-alive clients for `--seconds`
 * each, printing per round requests/s, p50/p99 and CPU ms per request of the hub, the agent, the service and the
 * database's backends, with the load average. `--profile FILE` takes a CPU profile of the hub over the inspector
 * during the last round only (no start-up in it).
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { setUpLink } from "./link.ts"

const here = Path.dirname(new URL(import.meta.url).pathname)
const args = process.argv.slice(2)
const option = (name: string, fallback: string) => {
  const i = args.indexOf(name)
  return i === -1 ? fallback : args[i + 1]!
}
const clients = Number(option("--clients", "32"))
const seconds = Number(option("--seconds", "5"))
const rounds = Number(option("--rounds", "3"))
const profile = option("--profile", "")
const TICKS = 100
const cpuMs = (pid: number) => {
  try {
    const f = Fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ").pop()!.split(" ")
    return ((Number(f[11]) + Number(f[12])) * 1000) / TICKS
  } catch {
    return 0
  }
}
/** Read and write system calls of a process so far (/proc/PID/io). */
const syscalls = (pid: number) => {
  try {
    const io = Fs.readFileSync(`/proc/${pid}/io`, "utf8")
    return { r: Number(/syscr: (\d+)/.exec(io)![1]), w: Number(/syscw: (\d+)/.exec(io)![1]) }
  } catch {
    return { r: 0, w: 0 }
  }
}
const run = (file: string, a: ReadonlyArray<string>) =>
  new Promise<string>((resolve, reject) => {
    const c = ChildProcess.spawn(process.execPath, ["--import", "tsx", Path.join(here, file), ...a], { stdio: ["ignore", "pipe", "inherit"] })
    let out = ""
    c.stdout.on("data", (d) => (out += d))
    c.on("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`exit ${code}`))))
  })

const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "lk-stand-"))
Fs.chmodSync(dir, 0o755)
const target = ChildProcess.spawn(process.execPath, ["--import", "tsx", Path.join(here, "link-target.ts")], { stdio: ["ignore", "pipe", "inherit"] })
const port = await new Promise<number>((resolve) => target.stdout.once("data", (d) => resolve(JSON.parse(String(d)).port)))
const link = await setUpLink(dir, port, undefined, profile ? ["--inspect=127.0.0.1:0"] : [])
try {
  const url = `${link.url}x`
  for (let r = 0; r < rounds; r++) {
    let stopProfile: (() => Promise<void>) | undefined
    if (profile && r === rounds - 1) stopProfile = await startProfile(link.hubOutput(), profile)
    const pids = { hub: [link.hubPid], agent: [link.agentPid], service: [target.pid!], postgres: await link.backends() }
    const before = Object.fromEntries(Object.entries(pids).map(([k, ps]) => [k, ps.reduce((n, p) => n + cpuMs(p), 0)]))
    const io0 = syscalls(link.hubPid)
    const sample = JSON.parse((await run("link-load.ts", [url, String(clients), String(seconds)])).trim().split("\n").pop()!)
    const after = Object.fromEntries(Object.entries(pids).map(([k, ps]) => [k, ps.reduce((n, p) => n + cpuMs(p), 0)]))
    const io1 = syscalls(link.hubPid)
    if (stopProfile) await stopProfile()
    const per = Object.keys(pids).map((k) => `${k} ${((after[k]! - before[k]!) / sample.all).toFixed(3)}`).join(", ")
    console.log(`round ${r + 1} c=${clients}: ${sample.rps.toFixed(0)} req/s, p50 ${sample.p50.toFixed(2)} ms, p99 ${sample.p99.toFixed(2)} ms, CPU ms/req ${per}, hub syscalls/req read ${((io1.r - io0.r) / sample.all).toFixed(2)} write ${((io1.w - io0.w) / sample.all).toFixed(2)}${Object.keys(sample.statuses).length ? ` other ${JSON.stringify(sample.statuses)}` : ""}; load ${Os.loadavg().map((l) => l.toFixed(1)).join(" ")}`)
  }
  await new Promise((r) => setTimeout(r, 1500))
  console.log(`on the log: ${JSON.stringify(await link.onLog())}`)
} finally {
  await link.stop().catch(() => {})
  target.kill()
  Fs.rmSync(dir, { recursive: true, force: true })
}

async function startProfile(output: string, file: string) {
  const m = /Debugger listening on (ws:\/\/\S+)/.exec(output)
  if (!m) throw new Error("no inspector URL in the hub's output")
  const { WebSocket } = await import("ws")
  const ws = new WebSocket(m[1]!)
  await new Promise((r) => ws.once("open", r))
  let id = 0
  const pending = new Map<number, (v: any) => void>()
  ws.on("message", (d) => {
    const msg = JSON.parse(String(d))
    if (msg.id !== undefined) pending.get(msg.id)?.(msg.result)
  })
  const send = (method: string, params: object = {}) =>
    new Promise<any>((resolve) => {
      const n = ++id
      pending.set(n, resolve)
      ws.send(JSON.stringify({ id: n, method, params }))
    })
  await send("Profiler.enable")
  await send("Profiler.setSamplingInterval", { interval: 500 })
  await send("Profiler.start")
  return async () => {
    const { profile: p } = await send("Profiler.stop")
    Fs.writeFileSync(file, JSON.stringify(p))
    ws.close()
  }
}
