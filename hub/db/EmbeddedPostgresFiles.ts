/**
 * The embedded cluster's place on disk and who may enter it: the paths under the hub's data directory, the OS user
 * the cluster runs as under root, where the cluster and its socket live, file ownership and modes, and the pid files
 * (`postmaster.pid`, and `hub.pid` naming the hub that owns the server).
 */
import * as ChildProcess from "node:child_process"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { messageOf } from "../../core/ErrorMessage.ts"
import { type EmbeddedPostgresError, fail } from "./EmbeddedPostgresError.ts"

/** `<dataDir>/pg`, where the hub's cluster lives (possibly as a symlink). */
export const clusterPath = (dataDir: string): string => Path.join(Path.resolve(dataDir), "pg")

/** `<dataDir>/pg.log`, where Postgres writes its log (mode 0600). */
export const logPath = (dataDir: string): string => Path.join(Path.resolve(dataDir), "pg.log")

/** `<dataDir>/hub.pid`: the process that started the cluster and stops it; a live owner's server is never touched. */
export const ownerPath = (dataDir: string): string => Path.join(Path.resolve(dataDir), "hub.pid")

/** The OS user the cluster runs as when the hub runs as root. */
export const OS_USER = "connect-pg"

/** Where a cluster goes when running as root and the cluster's OS user cannot enter the data directory. */
export const RELOCATED_ROOT = "/var/lib/connect"

/** The port number in the socket's name (`.s.PGSQL.<port>`); nothing listens on TCP. */
export const PORT = 5432

// Unix socket paths are limited to 107 bytes (sun_path); longer cluster paths get their socket in a short directory.
const MAX_SOCKET_PATH = 107

/** The uid and gid the cluster's processes and files get under root. */
export interface OsUser {
  readonly uid: number
  readonly gid: number
}

/** Runs a command to completion and returns its trimmed stdout; throws when it fails. */
export const run = (file: string, args: ReadonlyArray<string>): string =>
  ChildProcess.execFileSync(file, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim()

const shortHash = (s: string): string => Crypto.createHash("sha256").update(s).digest("hex").slice(0, 12)

/** Creates the hub's data directory (0755: the cluster's OS user may have to enter it). */
export const ensureDataDir = (dataDir: string): Effect.Effect<void, EmbeddedPostgresError> =>
  Effect.try({
    try: () => Fs.mkdirSync(dataDir, { recursive: true, mode: 0o755 }),
    catch: (cause) => fail("DataDir", `Cannot create the data directory ${dataDir}: ${messageOf(cause)}`, cause)
  })

/** Postgres refuses to run as root: when we are root, it runs as its own OS user, created if missing. */
export const clusterOsUser: Effect.Effect<OsUser | undefined, EmbeddedPostgresError> = Effect.try({
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

/** Decides (and prepares) the real cluster directory behind `<dataDir>/pg`. */
export const locateCluster = (dataDir: string, user: OsUser | undefined) =>
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
      Effect.fail(fail("DataDir", `Cannot prepare the Postgres directory under ${dataDir}: ${messageOf(cause)}`, cause))
    )
  )

/** The directory of the cluster's unix socket: the cluster directory, unless the socket's path would be too long. */
export const socketDirOf = (clusterDir: string): string =>
  Path.join(clusterDir, `.s.PGSQL.${PORT}`).length <= MAX_SOCKET_PATH
    ? clusterDir
    : Path.join(Os.tmpdir(), `connect-pg-${shortHash(clusterDir)}`)

/** Creates a socket directory outside the cluster directory, 0700 and the cluster's OS user's. */
export const prepareSocketDir = (clusterDir: string, socketDir: string, user: OsUser | undefined): Effect.Effect<void> =>
  Effect.sync(() => {
    if (socketDir === clusterDir) return
    Fs.mkdirSync(socketDir, { recursive: true, mode: 0o700 })
    if (user) Fs.chownSync(socketDir, user.uid, user.gid)
  })

/** Creates the empty cluster directory initdb fills: 0700 and the cluster's OS user's. */
export const createClusterDir = (clusterDir: string, user: OsUser | undefined): Effect.Effect<void, EmbeddedPostgresError> =>
  Effect.try({
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

/**
 * The cluster's files belong to its OS user: a cluster of an older build belongs to `postgres`, and Postgres refuses
 * a data directory it does not own.
 */
export const adopt = (clusterDir: string, socketDir: string, user: OsUser | undefined) =>
  Effect.try({
    try: () => {
      if (user === undefined) return
      if (Fs.statSync(clusterDir).uid !== user.uid) run("chown", ["-R", `${user.uid}:${user.gid}`, clusterDir])
      if (socketDir !== clusterDir && Fs.statSync(socketDir).uid !== user.uid) Fs.chownSync(socketDir, user.uid, user.gid)
      Fs.chmodSync(socketDir, 0o700)
    },
    catch: (cause) => fail("DataDir", `Cannot hand ${clusterDir} to the ${OS_USER} OS user: ${messageOf(cause)}`, cause)
  })

/** The lines of the cluster's `postmaster.pid` (pid first, "ready" on the 8th once it accepts connections), if any. */
export const readPidFile = (clusterDir: string): ReadonlyArray<string> | undefined => {
  try {
    return Fs.readFileSync(Path.join(clusterDir, "postmaster.pid"), "utf8").split("\n")
  } catch {
    return undefined
  }
}

/** The pid in `<dataDir>/hub.pid`, if any. */
export const readOwner = (dataDir: string): number | undefined => {
  try {
    const pid = Number(Fs.readFileSync(ownerPath(dataDir), "utf8").trim())
    return Number.isInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

/** Writes this process into `<dataDir>/hub.pid` and removes it when the scope closes, unless another took it over. */
export const holdOwnership = (dataDir: string): Effect.Effect<void, never, Scope.Scope> =>
  Effect.asVoid(Effect.acquireRelease(
    Effect.sync(() => Fs.writeFileSync(ownerPath(dataDir), `${process.pid}\n`)),
    () => Effect.sync(() => readOwner(dataDir) === process.pid && Fs.rmSync(ownerPath(dataDir), { force: true }))
  ))
