/**
 * The world the agent end-to-end tests run in, as real processes: a fresh database, a root directory readable by other
 * users (agent homes live under it), a TCP echo server, and the `connect` CLI run with a given `CONNECT_HOME`.
 * Registers its own beforeAll/afterAll: everything it or the test started (tracked pids, detached agents, held
 * sockets) is stopped at the end.
 */
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { Effect, Exit, Scope } from "effect"
import { afterAll, beforeAll } from "vitest"
import { makeTestDatabaseUrl } from "./TestDatabase.ts"
import { isAlive, killTracked, spawn, type Spawned } from "./processes.ts"

/** The hub's line saying where it listens: its URL (1) and port (2). */
export const LISTENING = /connect hub listening on (http:\/\/127\.0\.0\.1:(\d+))/

/** The admin API key a hub prints once, on its first start on a fresh database (1). */
export const API_KEY = /^\s+(pc_[0-9A-Za-z]{32,})\s*$/m

/** A hub started for the first time on a fresh database: where it listens and the admin API key it printed. */
export interface FirstHub {
  readonly hub: Spawned
  readonly url: string
  readonly port: number
  readonly apiKey: string
}

/** What a test uses; the values are there once its beforeAll ran. */
export interface AgentWorld {
  readonly databaseUrl: () => string
  readonly echoPort: () => number
  /** A fresh directory under the root, mode 0755 (an agent's or the hub's `CONNECT_HOME`). */
  readonly dir: (name: string) => string
  /** Runs `connect ARGS` with `CONNECT_HOME=home`, without the caller's DATABASE_URL or CONNECT_ALLOW_INSECURE. */
  readonly connect: (home: string, args: ReadonlyArray<string>, extra?: NodeJS.ProcessEnv) => Spawned
  /** Runs a short `connect` command to its end. */
  readonly command: (
    home: string,
    args: ReadonlyArray<string>,
    extra?: NodeJS.ProcessEnv
  ) => Promise<{ code: number | null; stdout: string; stderr: string }>
  /** `connect hub --port PORT [ARGS]` on the world's database. */
  readonly startHub: (home: string, port: number, args?: ReadonlyArray<string>) => Spawned
  /**
   * The hub's first start on the world's database, on a free port, once it listens and printed its API key; `args`
   * are more flags of `connect hub` (e.g. a short `--denial-window`, so coalesced refusals are written sooner).
   */
  readonly firstHub: (home: string, args?: ReadonlyArray<string>) => Promise<FirstHub>
  /** Pids of detached agents, SIGKILLed at the end. */
  readonly detachedPids: Array<number>
  /** Sockets the test holds open, destroyed at the end. */
  readonly sockets: Array<Net.Socket>
}

/** Sets up the world for the calling test file; `name` goes into the root directory's name. */
export const make = (name: string): AgentWorld => {
  let scope: Scope.CloseableScope | undefined
  let root = ""
  let databaseUrl = ""
  let echo: Net.Server | undefined
  let echoPort = 0
  const detachedPids: Array<number> = []
  const sockets: Array<Net.Socket> = []

  beforeAll(async () => {
    scope = Effect.runSync(Scope.make())
    databaseUrl = await Effect.runPromise(Scope.extend(makeTestDatabaseUrl, scope))
    // Not under /root, readable by other users (the hub never needs it, but keep every test home alike).
    root = Fs.mkdtempSync(Path.join(Os.tmpdir(), `connect-${name}-e2e-`))
    Fs.chmodSync(root, 0o755)
    echo = Net.createServer({ allowHalfOpen: true }, (socket) => {
      socket.on("error", () => {})
      socket.pipe(socket)
    })
    await new Promise<void>((resolve) => echo!.listen(0, "127.0.0.1", resolve))
    echoPort = (echo.address() as Net.AddressInfo).port
  }, 120_000)

  afterAll(async () => {
    for (const socket of sockets) socket.destroy()
    for (const pid of detachedPids) if (isAlive(pid)) process.kill(pid, "SIGKILL")
    killTracked()
    echo?.close()
    if (scope) await Effect.runPromise(Scope.close(scope, Exit.void))
    if (root) Fs.rmSync(root, { recursive: true, force: true })
  }, 60_000)

  const baseEnv = (): NodeJS.ProcessEnv => {
    const env = { ...process.env }
    delete env.CONNECT_ALLOW_INSECURE
    delete env.DATABASE_URL
    return env
  }
  const connect = (home: string, args: ReadonlyArray<string>, extra: NodeJS.ProcessEnv = {}): Spawned =>
    spawn(process.execPath, ["bin/connect.js", ...args], { env: { ...baseEnv(), CONNECT_HOME: home, ...extra } })
  const startHub = (home: string, port: number, args: ReadonlyArray<string> = []): Spawned =>
    connect(home, ["hub", "--port", String(port), ...args], { DATABASE_URL: databaseUrl })

  return {
    databaseUrl: () => databaseUrl,
    echoPort: () => echoPort,
    dir: (child) => {
      const path = Path.join(root, child)
      Fs.mkdirSync(path)
      Fs.chmodSync(path, 0o755)
      return path
    },
    connect,
    command: async (home, args, extra = {}) => {
      const cli = connect(home, args, extra)
      const exit = await cli.exited(60_000)
      return { code: exit.code, stdout: cli.stdout(), stderr: cli.stderr() }
    },
    startHub,
    firstHub: async (home, args = []) => {
      const hub = startHub(home, 0, args)
      const listening = await hub.waitFor(LISTENING, 90_000)
      const apiKey = (await hub.waitFor(API_KEY, 5_000))[1]!
      return { hub, url: listening[1]!, port: Number(listening[2]), apiKey }
    },
    detachedPids,
    sockets
  }
}
