/**
 * `npm run bench -- relay [--json [FILE]] [--quick]`: the relay against the tools a user would otherwise pick.
 *
 * Topology per transport: client (this process) → agent B (reach listener) → hub → agent A → target, each a
 * separate Node process on 127.0.0.1, started with the tuning bin/connect gives (malloc and V8 settings), and warmed
 * up with one transfer each way before measuring. Anchors use the same client and target: direct TCP, a one-hop
 * socat forwarder, `ssh -L` through a throwaway sshd, and — throughput only — three socat forwarders in a row (what
 * the relay's four TCP hops cost on this machine without any framing) and a msgpack relay started without
 * bin/connect's tuning (what that tuning is worth). Figures are medians of 3 runs with their min–max spread.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Readline from "node:readline"
import { median, percentile, printTable, writeJson } from "./Report.ts"

const here = Path.dirname(new URL(import.meta.url).pathname)
const started: Array<ChildProcess.ChildProcess> = []

interface Proc {
  readonly child: ChildProcess.ChildProcess
  readonly first: Record<string, unknown>
  readonly ask: (line: string) => Promise<Record<string, unknown>>
}

/** Spawns a process and resolves once it printed its first JSON line. */
const spawn = (command: string, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = process.env): Promise<Proc> =>
  new Promise((resolve, reject) => {
    const child = ChildProcess.spawn(command, args, { stdio: ["pipe", "pipe", "inherit"], env })
    started.push(child)
    const waiting: Array<(value: Record<string, unknown>) => void> = []
    const lines = Readline.createInterface({ input: child.stdout! })
    let first = true
    lines.on("line", (line) => {
      let value: Record<string, unknown>
      try {
        value = JSON.parse(line)
      } catch {
        return
      }
      if (first) {
        first = false
        resolve({
          child,
          first: value,
          ask: (l) =>
            new Promise((r) => {
              waiting.push(r)
              child.stdin!.write(`${l}\n`)
            })
        })
      } else {
        waiting.shift()?.(value)
      }
    })
    child.once("exit", (code) => first && reject(new Error(`${command} ${args.join(" ")} exited with ${code}`)))
  })

/** How a bench process is started: its environment and node's flags. */
interface Launch {
  readonly env: NodeJS.ProcessEnv
  readonly nodeFlags: ReadonlyArray<string>
}

/**
 * The tuning bin/connect starts node with (GLIBC_TUNABLES and V8 flags), read from that file so that the bench runs
 * the relay the way users get it: bench processes are TypeScript entry points, not `connect` commands, so they cannot
 * go through the launcher itself.
 */
const launcherTuning = (): { readonly tunables: string; readonly nodeFlags: ReadonlyArray<string> } => {
  const text = Fs.readFileSync(Path.join(here, "../../bin/connect"), "utf8")
  const tunables = /^GLIBC_TUNABLES="([^"$]+)/m.exec(text)
  const flags = /^node_flags="([^"]*)"/m.exec(text)
  if (!tunables || !flags) throw new Error("bin/connect no longer sets its tuning the way this bench reads it")
  return { tunables: tunables[1]!, nodeFlags: flags[1]!.split(" ").filter((f) => f !== "") }
}

const node = (
  file: string,
  args: ReadonlyArray<string>,
  nodeArgs: ReadonlyArray<string> = [],
  env: NodeJS.ProcessEnv = process.env
) => spawn(process.execPath, [...nodeArgs, "--import", "tsx", Path.join(here, file), ...args], env)

const stop = async (child: ChildProcess.ChildProcess) => {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((r) => child.once("exit", r))
  child.stdin?.end()
  child.kill("SIGTERM")
  const timer = setTimeout(() => child.kill("SIGKILL"), 2_000)
  await exited
  clearTimeout(timer)
}

const connect = (port: number) =>
  new Promise<Net.Socket>((resolve, reject) => {
    const socket = Net.connect({ port, host: "127.0.0.1", noDelay: true, allowHalfOpen: true })
    socket.once("connect", () => resolve(socket))
    socket.once("error", reject)
  })

const block = Buffer.alloc(1024 * 1024, 0xa5)

/** B1 upload: MB/s of `bytes` sent to the sink until it confirmed the count. */
const upload = async (port: number, bytes: number): Promise<number> => {
  const socket = await connect(port)
  const start = process.hrtime.bigint()
  socket.write("S")
  let left = bytes
  await new Promise<void>((resolve) => {
    const pump = () => {
      while (left > 0) {
        const chunk = left >= block.byteLength ? block : block.subarray(0, left)
        left -= chunk.byteLength
        if (!socket.write(chunk)) return socket.once("drain", pump)
      }
      socket.end()
      resolve()
    }
    pump()
  })
  const answer = await readAll(socket)
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9
  if (answer.byteLength !== 8 || Number(answer.readBigUInt64BE()) !== bytes) throw new Error("sink count mismatch")
  return bytes / 1e6 / elapsed
}

/**
 * B1 download: MB/s of `bytes` generated by the target until EOF. The client reads into one reused buffer, as a C
 * client would, so that its own allocations do not weigh on the paths measured.
 */
const download = async (port: number, bytes: number): Promise<number> => {
  let got = 0
  const socket = await new Promise<Net.Socket>((resolve, reject) => {
    const s = Net.connect({
      port,
      host: "127.0.0.1",
      noDelay: true,
      allowHalfOpen: true,
      onread: {
        buffer: readBuffer,
        callback: (n) => {
          got += n
          return true
        }
      }
    })
    s.once("connect", () => resolve(s))
    s.once("error", reject)
  })
  const start = process.hrtime.bigint()
  const head = Buffer.alloc(9)
  head.write("G")
  head.writeBigUInt64BE(BigInt(bytes), 1)
  socket.write(head)
  await new Promise<void>((resolve, reject) => {
    socket.once("end", resolve)
    socket.once("error", reject)
  })
  socket.destroy()
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9
  if (got !== bytes) throw new Error(`download got ${got} of ${bytes}`)
  return bytes / 1e6 / elapsed
}

const readBuffer = Buffer.allocUnsafe(1024 * 1024)

const readAll = (socket: Net.Socket) =>
  new Promise<Buffer>((resolve, reject) => {
    const chunks: Array<Buffer> = []
    socket.on("data", (c: Buffer) => chunks.push(c))
    socket.once("end", () => {
      socket.destroy()
      resolve(Buffer.concat(chunks))
    })
    socket.once("error", reject)
  })

/** B3: round-trip times in µs of `size`-byte messages through the echo target. */
const pingPong = async (port: number, size: number, count: number): Promise<Array<number>> => {
  const socket = await connect(port)
  socket.write("E")
  const message = Buffer.alloc(size, 0x42)
  const times: Array<number> = []
  let pending = 0
  let sentAt = 0n
  let done!: () => void
  const finished = new Promise<void>((r) => (done = r))
  const warmup = Math.min(200, count)
  const send = () => {
    pending = size
    sentAt = process.hrtime.bigint()
    socket.write(message)
  }
  socket.on("data", (c: Buffer) => {
    pending -= c.byteLength
    if (pending > 0) return
    const rtt = Number(process.hrtime.bigint() - sentAt) / 1e3
    times.push(rtt)
    if (times.length >= count + warmup) return done()
    send()
  })
  send()
  await finished
  socket.destroy()
  return times.slice(warmup)
}

/** B4: streams per second of connect, 1-byte echo, close, with `parallel` clients for `total` streams. */
const openRate = async (port: number, total: number, parallel: number): Promise<number> => {
  let left = total
  const one = async () => {
    const socket = await connect(port)
    await new Promise<void>((resolve, reject) => {
      socket.once("data", () => resolve())
      socket.once("error", reject)
      socket.write("Ex")
    })
    socket.destroy()
  }
  const start = process.hrtime.bigint()
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (left-- > 0) await one()
    })
  )
  return total / (Number(process.hrtime.bigint() - start) / 1e9)
}

/**
 * B6: hub memory growth (MB) while the target pushes into a client reading 5 MB/s for `seconds`: RSS, and the heap in
 * use after a GC (buffered payloads would show there). The relay moves 64 MB first, so that growth measures
 * buffering rather than a fresh process's one-time growth (JIT code, heap and malloc arenas reaching working size).
 */
const slowReader = async (port: number, hub: Proc, seconds: number) => {
  await download(port, 64 << 20)
  const baseStats = await hub.ask("stats")
  const base = Number(baseStats.rss)
  const baseHeap = Number(baseStats.heap)
  let peakHeap = baseHeap
  const socket = await connect(port)
  const head = Buffer.alloc(9)
  head.write("G")
  head.writeBigUInt64BE(BigInt(1e12), 1)
  socket.write(head)
  socket.pause()
  let read = 0
  let peak = base
  let peakBuffered = 0
  const reader = setInterval(() => {
    let n = 0
    let c: Buffer | null
    while (n < 50_000 && (c = socket.read(Math.min(50_000 - n, socket.readableLength || 50_000))) !== null) {
      n += c.byteLength
    }
    read += n
  }, 10)
  const until = Date.now() + seconds * 1000
  while (Date.now() < until) {
    await new Promise((r) => setTimeout(r, 500))
    const stats = await hub.ask("stats")
    peak = Math.max(peak, Number(stats.rss))
    peakHeap = Math.max(peakHeap, Number(stats.heap))
    peakBuffered = Math.max(peakBuffered, Number(stats.bufferedBytes))
  }
  clearInterval(reader)
  socket.destroy()
  return {
    growthMB: (peak - base) / 1e6,
    heapGrowthMB: (peakHeap - baseHeap) / 1e6,
    readMBps: read / 1e6 / seconds,
    peakHubBufferedKB: peakBuffered / 1024
  }
}

/**
 * B5: hub memory per idle stream (bytes), from one baseline, with each of `counts` (ascending) streams open in turn.
 * At the hub a stream is JavaScript objects only (no socket of its own), so the heap in use after a GC measures it
 * exactly; RSS is reported beside it but moves by megabytes with what the allocators keep. Run on a fresh hub: one that
 * relayed before keeps freed heap (bin/connect's malloc tuning), which would hide RSS growth. 200 streams are opened
 * and closed first so that the baseline already holds the code and feedback of the stream paths.
 */
const idleStreams = async (port: number, hub: Proc, counts: ReadonlyArray<number>) => {
  await openRate(port, 200, 20)
  const baseStats = await hub.ask("stats")
  const base = Number(baseStats.rss)
  const baseHeap = Number(baseStats.heap)
  const sockets: Array<Net.Socket> = []
  const stages: Array<{ open: number; bytesPerStream: number; heapPerStream: number }> = []
  for (const count of counts) {
    let left = count - sockets.length
    await Promise.all(
      Array.from({ length: 100 }, async () => {
        while (left-- > 0) {
          const socket = await connect(port)
          socket.on("error", () => {})
          socket.write("E")
          sockets.push(socket)
        }
      })
    )
    const until = Date.now() + 30_000
    let stats = await hub.ask("stats")
    while (Number(stats.streams) < count && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 200))
      stats = await hub.ask("stats")
    }
    const open = Number(stats.streams)
    stages.push({
      open,
      bytesPerStream: (Number(stats.rss) - base) / open,
      heapPerStream: (Number(stats.heap) - baseHeap) / open
    })
  }
  for (const s of sockets) s.destroy()
  const drainUntil = Date.now() + 30_000
  while (Number((await hub.ask("stats")).streams) > 0 && Date.now() < drainUntil) {
    await new Promise((r) => setTimeout(r, 200))
  }
  return stages
}

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = Net.createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as Net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })

const waitForPort = async (port: number, ms: number) => {
  const until = Date.now() + ms
  while (Date.now() < until) {
    const ok = await connect(port).then((s) => (s.destroy(), true), () => false)
    if (ok) return
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`nothing listens on ${port}`)
}

const have = (command: string) => ChildProcess.spawnSync("sh", ["-c", `command -v ${command}`]).status === 0

/** Installs socat and openssh-server with apt-get when missing. */
const ensureTools = () => {
  const missing = [have("socat") ? undefined : "socat", Fs.existsSync("/usr/sbin/sshd") ? undefined : "openssh-server"]
    .filter((p): p is string => p !== undefined)
  if (missing.length === 0) return
  console.log(`installing ${missing.join(" ")} ...`)
  const install = () => ChildProcess.spawnSync("apt-get", ["install", "-y", ...missing], { stdio: "ignore" }).status
  if (install() !== 0) {
    ChildProcess.spawnSync("apt-get", ["update"], { stdio: "ignore" })
    install()
  }
}

/** Starts a throwaway sshd on 127.0.0.1 and an `ssh -L` to `target`; resolves the local forwarded port. */
const startSshForward = async (target: number): Promise<number | undefined> => {
  if (!Fs.existsSync("/usr/sbin/sshd") || !have("ssh")) return undefined
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-bench-ssh-"))
  const keygen = (name: string) =>
    ChildProcess.spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", Path.join(dir, name)])
  keygen("host")
  keygen("user")
  Fs.copyFileSync(Path.join(dir, "user.pub"), Path.join(dir, "authorized_keys"))
  Fs.mkdirSync("/run/sshd", { recursive: true })
  const sshPort = await freePort()
  const config = Path.join(dir, "sshd_config")
  Fs.writeFileSync(
    config,
    [
      `Port ${sshPort}`,
      "ListenAddress 127.0.0.1",
      `HostKey ${Path.join(dir, "host")}`,
      `AuthorizedKeysFile ${Path.join(dir, "authorized_keys")}`,
      "StrictModes no",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "UsePAM no",
      "PermitRootLogin prohibit-password",
      "AllowTcpForwarding yes",
      "Ciphers aes128-gcm@openssh.com",
      `PidFile ${Path.join(dir, "sshd.pid")}`
    ].join("\n") + "\n"
  )
  const sshd = ChildProcess.spawn("/usr/sbin/sshd", ["-D", "-e", "-f", config], { stdio: "ignore" })
  started.push(sshd)
  await waitForPort(sshPort, 5_000)
  const local = await freePort()
  const ssh = ChildProcess.spawn(
    "ssh",
    [
      "-N",
      "-L",
      `127.0.0.1:${local}:127.0.0.1:${target}`,
      "-p",
      String(sshPort),
      "-i",
      Path.join(dir, "user"),
      "-o",
      "StrictHostKeyChecking=no",
      "-o",
      "UserKnownHostsFile=/dev/null",
      "-o",
      "BatchMode=yes",
      "-o",
      "ExitOnForwardFailure=yes",
      "-o",
      "Ciphers=aes128-gcm@openssh.com",
      "-o",
      "LogLevel=ERROR",
      `${Os.userInfo().username}@127.0.0.1`
    ],
    { stdio: "ignore" }
  )
  started.push(ssh)
  await waitForPort(local, 10_000)
  return local
}

interface Path_ {
  readonly name: string
  readonly port: number
  /** A connect relay (warmed up first; compared with the anchors). */
  readonly relay?: boolean
  /** Measure B1 only (the extra anchors). */
  readonly throughputOnly?: boolean
}

const socatForward = async (to: number): Promise<number> => {
  const port = await freePort()
  const socat = ChildProcess.spawn(
    "socat",
    ["-b", "65536", `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork,nodelay`, `TCP:127.0.0.1:${to},nodelay`],
    { stdio: "ignore" }
  )
  started.push(socat)
  await waitForPort(port, 5_000)
  return port
}

const spread = (xs: ReadonlyArray<number>) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs) })
const fmt = (s: { median: number; min: number; max: number }) =>
  `${s.median.toFixed(0)} (${s.min.toFixed(0)}–${s.max.toFixed(0)})`

/** Runs the relay benchmark. */
export const main = async (args: ReadonlyArray<string>) => {
  const quick = args.includes("--quick")
  const runs = 3
  const bigBytes = quick ? 128 << 20 : 512 << 20
  const wsBytes = quick ? 32 << 20 : 128 << 20
  const results: Record<string, unknown> = {}
  const cleanup = async () => {
    for (const child of started.reverse()) await stop(child)
  }
  process.once("SIGINT", () => void cleanup().then(() => process.exit(130)))
  try {
    ensureTools()
    const tuning = launcherTuning()
    const tuned: Launch = { env: { ...process.env, GLIBC_TUNABLES: tuning.tunables }, nodeFlags: tuning.nodeFlags }
    const untunedEnv = { ...process.env }
    delete untunedEnv.GLIBC_TUNABLES
    const untuned: Launch = { env: untunedEnv, nodeFlags: [] }
    // The target stands for the service reached; it runs tuned on every path, anchors included.
    const target = await node("relay-target.ts", [], tuned.nodeFlags, tuned.env)
    const targetPort = Number(target.first.port)
    const paths: Array<Path_> = [{ name: "direct", port: targetPort }]
    if (have("socat")) paths.push({ name: "socat", port: await socatForward(targetPort) })
    const sshPort = await startSshForward(targetPort).catch((error) => {
      console.error(`ssh -L anchor unavailable: ${error}`)
      return undefined
    })
    if (sshPort !== undefined) paths.push({ name: "ssh -L", port: sshPort })
    const startRelay = async (transport: string, { env, nodeFlags }: Launch) => {
      const hub = await node("relay-hub.ts", [], ["--expose-gc", ...nodeFlags], env)
      const url = String(hub.first.url)
      const agent = (token: string, role: ReadonlyArray<string>) =>
        node("relay-agent.ts", ["--url", url, "--transport", transport, "--token", token, ...role], nodeFlags, env)
      const a = await agent("a".repeat(64), ["--expose", `bench=127.0.0.1:${targetPort}`])
      const b = await agent("b".repeat(64), ["--reach", "bench"])
      return { port: Number(b.first.port), hub, processes: [hub.child, a.child, b.child] }
    }
    const relay = async (name: string, transport: string, launch: Launch, throughputOnly = false) => {
      const { port } = await startRelay(transport, launch)
      paths.push({ name, port, relay: true, throughputOnly })
    }
    await relay("connect msgpack", "msgpack", tuned)
    await relay("connect ws", "ws", tuned)
    await relay("connect msgpack, untuned", "msgpack", untuned, true)
    if (have("socat")) {
      const chain = await socatForward(await socatForward(await socatForward(targetPort)))
      paths.push({ name: "socat ×3 (4 hops)", port: chain, throughputOnly: true })
    }

    const rows: Array<Record<string, unknown>> = []
    for (const path of paths) {
      const bytes = path.name === "connect ws" ? wsBytes : bigBytes
      const up: Array<number> = []
      const down: Array<number> = []
      const p50s: Array<number> = []
      const p99s: Array<number> = []
      const p50k: Array<number> = []
      const p99k: Array<number> = []
      const rates: Array<number> = []
      let stalls = 0
      if (path.relay) {
        // Warm-up: JIT, and the relay processes' heaps growing to their working size.
        await upload(path.port, bytes)
        await download(path.port, bytes)
      }
      for (let run = 0; run < runs; run++) {
        up.push(await upload(path.port, bytes))
        down.push(await download(path.port, bytes))
        if (path.throughputOnly) continue
        const small = await pingPong(path.port, 64, quick ? 1_000 : 3_000)
        p50s.push(percentile(small, 50))
        p99s.push(percentile(small, 99))
        stalls += small.filter((t) => t >= 40_000).length
        const large = await pingPong(path.port, 16 * 1024, quick ? 500 : 1_500)
        p50k.push(percentile(large, 50))
        p99k.push(percentile(large, 99))
        stalls += large.filter((t) => t >= 40_000).length
        rates.push(await openRate(path.port, quick ? 500 : 2_000, 16))
      }
      const row = path.throughputOnly
        ? { path: path.name, upMBps: spread(up), downMBps: spread(down) }
        : {
        path: path.name,
        upMBps: spread(up),
        downMBps: spread(down),
        p50_64B_us: spread(p50s),
        p99_64B_us: spread(p99s),
        p50_16K_us: spread(p50k),
        p99_16K_us: spread(p99k),
        stalls40ms: stalls,
        streamsPerSec: spread(rates)
      }
      results[path.name] = row
      rows.push(row)
      console.log(`${path.name}: up ${fmt(row.upMBps)} MB/s, down ${fmt(row.downMBps)} MB/s`)
    }

    printTable(
      "B1 throughput (MB/s, median (min–max) of 3) · B3 ping-pong (µs) · B4 stream opens/s",
      ["path", "up", "down", "64B p50", "64B p99", "16K p50", "16K p99", "40ms stalls", "opens/s"],
      rows.map((r) => {
        const x = r as Record<string, { median: number; min: number; max: number } | undefined>
        const f = (s: { median: number; min: number; max: number } | undefined) => (s ? fmt(s) : "—")
        return {
          path: r.path,
          up: f(x.upMBps),
          down: f(x.downMBps),
          "64B p50": f(x.p50_64B_us),
          "64B p99": f(x.p99_64B_us),
          "16K p50": f(x.p50_16K_us),
          "16K p99": f(x.p99_16K_us),
          "40ms stalls": r.stalls40ms ?? "—",
          "opens/s": f(x.streamsPerSec)
        }
      })
    )

    const ratios: Array<Record<string, unknown>> = []
    for (const path of paths.filter((p) => p.relay)) {
      const r = results[path.name] as { upMBps: { median: number }; downMBps: { median: number } }
      for (const anchor of ["ssh -L", "socat", "socat ×3 (4 hops)"]) {
        const a = results[anchor] as { upMBps: { median: number }; downMBps: { median: number } } | undefined
        if (!a) continue
        ratios.push({
          path: path.name,
          vs: anchor,
          up: r.upMBps.median / a.upMBps.median,
          down: r.downMBps.median / a.downMBps.median
        })
      }
    }
    results.ratios = ratios
    printTable("B1 ratio of medians", ["path", "vs", "up", "down"], ratios)

    const memory: Array<Record<string, unknown>> = []
    // Each memory figure on a relay of its own, started for it (see idleStreams).
    for (const transport of ["msgpack", "ws"]) {
      const forB6 = await startRelay(transport, tuned)
      const b6 = await slowReader(forB6.port, forB6.hub, quick ? 4 : 10)
      for (const child of forB6.processes) await stop(child)
      const forB5 = await startRelay(transport, tuned)
      const [b5small, b5large] = await idleStreams(forB5.port, forB5.hub, quick ? [1_000] : [1_000, 10_000])
      for (const child of forB5.processes) await stop(child)
      memory.push({
        path: `connect ${transport}`,
        "B6 RSS growth MB": b6.growthMB,
        "B6 heap growth MB": b6.heapGrowthMB,
        "B6 read MB/s": b6.readMBps,
        "B6 peak buffered KB": b6.peakHubBufferedKB,
        "B5 heap B/stream @1k": b5small!.heapPerStream,
        "B5 heap B/stream @10k": b5large?.heapPerStream ?? "skipped",
        "B5 RSS B/stream @1k": b5small!.bytesPerStream,
        "B5 RSS B/stream @10k": b5large?.bytesPerStream ?? "skipped",
        "B5 open @10k": b5large?.open ?? ""
      })
    }
    results.memory = memory
    printTable("B6 slow reader (5 MB/s) · B5 hub memory per idle stream", [
      "path",
      "B6 RSS growth MB",
      "B6 heap growth MB",
      "B6 read MB/s",
      "B6 peak buffered KB",
      "B5 heap B/stream @1k",
      "B5 heap B/stream @10k",
      "B5 RSS B/stream @1k",
      "B5 RSS B/stream @10k",
      "B5 open @10k"
    ], memory)
    writeJson(args, "relay", { runs, bytes: { default: bigBytes, ws: wsBytes }, results })
  } finally {
    await cleanup()
  }
}
