/**
 * A real rsyslogd for tests: installed when missing (test/support/install-rsyslog.sh), run in the foreground with a
 * throwaway config in a temporary directory (imtcp on a loopback port, octet-counted framing, every message written
 * raw to one output file, its own pid file and work directory; no system log, socket or config touched), stopped by
 * pid. Every wait is bounded.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"

const installer = Path.join(import.meta.dirname, "install-rsyslog.sh")

/** Installs rsyslog if rsyslogd is missing (at most 10 minutes: apt may have to update its lists) and returns its path. */
export const ensureRsyslogd = (): string => {
  ChildProcess.execFileSync(installer, { stdio: ["ignore", "ignore", "inherit"], timeout: 600_000 })
  const found = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"].find((p) => Fs.existsSync(p))
  if (found !== undefined) return found
  return ChildProcess.execFileSync("sh", ["-c", "command -v rsyslogd"], { encoding: "utf8" }).trim()
}

/** A free TCP port on loopback, as the kernel hands one out. */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = Net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as Net.AddressInfo).port
      server.close(() => resolve(port))
    })
  })

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Whether something accepts TCP connections on the loopback port. */
const accepts = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = Net.connect({ host: "127.0.0.1", port })
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.once("connect", () => done(true))
    socket.once("error", () => done(false))
    socket.setTimeout(1000, () => done(false))
  })

/** A running rsyslogd of the test's own. */
export interface Rsyslog {
  readonly port: number
  readonly dir: string
  /** Where every received message is written, one per line, exactly as received (`%rawmsg%`). */
  readonly output: string
  /** The running daemon's pid. */
  readonly pid: () => number
  /** The lines written so far (complete lines only). */
  readonly lines: () => Array<string>
  /** Waits (at most `timeoutMs`) until at least `count` lines are written; returns them. */
  readonly waitForLines: (count: number, timeoutMs?: number) => Promise<Array<string>>
  /**
   * Stops the daemon with SIGSTOP and waits until every thread of it is stopped: from then on it reads nothing more,
   * while the kernel still accepts bytes for it. (Without the wait, a thread could still read what is written right
   * after the signal, and a kill would then lose records the server had read: a clean close, nothing to resend.)
   */
  readonly freeze: () => Promise<void>
  /** Kills the daemon with SIGKILL (no chance to flush) and waits for it to exit. */
  readonly crash: () => Promise<void>
  /** Starts the daemon again on the same port and output file. */
  readonly restart: () => Promise<void>
  /** Stops the daemon with SIGTERM (SIGKILL after 10 s) and removes the directory. */
  readonly stop: () => Promise<void>
}

// Large enough for a record with a 256 KB value in every format (rsyslog's default is 8 KB); imtcp's own limit on an
// octet-counted frame (200,000 bytes by default) is raised to match, or larger frames would be read as unframed text.
const MAX_MESSAGE = "4m"
const MAX_FRAME = 4 * 1024 * 1024
// omfile writes through a buffer (4 KiB by default) flushed whenever it fills: a daemon killed between two flushes of
// one record leaves half a line in the file. A buffer larger than any batch rsyslog dequeues (at most a few dozen
// records here) is written once per batch, so a killed daemon leaves whole lines only.
const OUTPUT_BUFFER = "32m"

const config = (dir: string, port: number, output: string) => `
global(workDirectory="${dir}/work" maxMessageSize="${MAX_MESSAGE}" parser.escapeControlCharactersOnReceive="off")
module(load="imtcp" maxSessions="50")
template(name="raw" type="string" string="%rawmsg%\\n")
ruleset(name="export") {
  action(type="omfile" file="${output}" template="raw" ioBufferSize="${OUTPUT_BUFFER}")
}
input(type="imtcp" address="127.0.0.1" port="${port}" ruleset="export" supportOctetCountedFraming="on" maxFrameSize="${MAX_FRAME}")
`

/** Starts an rsyslogd listening on a free loopback port; resolves once it accepts connections (at most 20 s). */
export const startRsyslog = async (): Promise<Rsyslog> => {
  const rsyslogd = ensureRsyslogd()
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-rsyslog-"))
  Fs.mkdirSync(Path.join(dir, "work"))
  const port = await freePort()
  const output = Path.join(dir, "received.log")
  const conf = Path.join(dir, "rsyslog.conf")
  const pidFile = Path.join(dir, "rsyslogd.pid")
  Fs.writeFileSync(conf, config(dir, port, output))
  ChildProcess.execFileSync(rsyslogd, ["-N1", "-f", conf], { stdio: "pipe", timeout: 20_000 })

  let child: ChildProcess.ChildProcess | undefined
  let log = ""
  const start = async () => {
    const proc = ChildProcess.spawn(rsyslogd, ["-n", "-f", conf, "-i", pidFile], { stdio: ["ignore", "pipe", "pipe"] })
    proc.stdout!.on("data", (c: Buffer) => (log += c.toString()))
    proc.stderr!.on("data", (c: Buffer) => (log += c.toString()))
    child = proc
    const deadline = Date.now() + 20_000
    while (!(await accepts(port))) {
      if (proc.exitCode !== null || Date.now() > deadline) {
        proc.kill("SIGKILL")
        throw new Error(`rsyslogd did not listen on 127.0.0.1:${port} within 20 s:\n${log}`)
      }
      await sleep(50)
    }
  }
  const exited = (proc: ChildProcess.ChildProcess, timeoutMs: number) =>
    new Promise<boolean>((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return resolve(true)
      const timer = setTimeout(() => resolve(false), timeoutMs)
      proc.once("exit", () => {
        clearTimeout(timer)
        resolve(true)
      })
    })
  const lines = () => {
    if (!Fs.existsSync(output)) return []
    const text = Fs.readFileSync(output, "utf8")
    const end = text.lastIndexOf("\n")
    return end < 0 ? [] : text.slice(0, end).split("\n")
  }
  await start()
  return {
    port,
    dir,
    output,
    pid: () => child!.pid!,
    lines,
    waitForLines: async (count, timeoutMs = 30_000) => {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const got = lines()
        if (got.length >= count) return got
        if (Date.now() > deadline) throw new Error(`rsyslogd wrote ${got.length} of ${count} lines within ${timeoutMs} ms:\n${log}`)
        await sleep(50)
      }
    },
    freeze: async () => {
      const pid = child!.pid!
      child!.kill("SIGSTOP")
      const stopped = () => {
        try {
          return Fs.readdirSync(`/proc/${pid}/task`).every((task) =>
            /^[Tt]$/.test(Fs.readFileSync(`/proc/${pid}/task/${task}/stat`, "utf8").split(") ").pop()!.split(" ")[0]!))
        } catch {
          return false
        }
      }
      const deadline = Date.now() + 5_000
      while (!stopped()) {
        if (Date.now() > deadline) throw new Error(`rsyslogd ${pid} did not stop within 5 s of SIGSTOP`)
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
    },
    crash: async () => {
      const proc = child!
      proc.kill("SIGKILL")
      if (!(await exited(proc, 10_000))) throw new Error(`rsyslogd ${proc.pid} did not die from SIGKILL within 10 s`)
    },
    restart: start,
    stop: async () => {
      const proc = child
      if (proc !== undefined && proc.exitCode === null && proc.signalCode === null) {
        proc.kill("SIGTERM")
        if (!(await exited(proc, 10_000))) {
          proc.kill("SIGKILL")
          await exited(proc, 5_000)
        }
      }
      Fs.rmSync(dir, { recursive: true, force: true })
    }
  }
}
