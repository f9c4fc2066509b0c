/**
 * The embedded cluster's roles and passwords: the owner (superuser) and the hub's role, their SCRAM passwords
 * generated into `<dataDir>/pg-secrets.json` (0600), and the switch from initdb's trust to passwords on the unix socket
 * before the server first listens.
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Effect from "effect/Effect"
import { messageOf } from "../../core/ErrorMessage.ts"
import { type EmbeddedPostgresError, fail } from "./EmbeddedPostgresError.ts"
import type { OsUser } from "./EmbeddedPostgresFiles.ts"
import { type Binaries, exitCode, spawnLogged, tail } from "./EmbeddedPostgresProcess.ts"

/** The cluster's superuser: owns the schema and runs the migrations. */
export const OWNER_ROLE = "postgres"

/** The role the hub and the offline commands connect as: appends to and reads `events`, nothing more. */
export const HUB_ROLE = "connect_hub"

/** The passwords of the cluster's two roles. */
export interface Secrets {
  readonly owner: string
  readonly hub: string
}

/** `<dataDir>/pg-secrets.json` (mode 0600): the SCRAM passwords of {@link OWNER_ROLE} and {@link HUB_ROLE}. */
export const secretsPath = (dataDir: string): string => Path.join(Path.resolve(dataDir), "pg-secrets.json")

// The first line of the pg_hba.conf we write; a cluster without it still trusts its socket (older builds).
const HBA_MARKER = "# connect: unix socket only, SCRAM passwords"

/** The cluster's passwords, generated on first use and kept 0600 next to the cluster. */
export const readSecrets = (dataDir: string): Effect.Effect<Secrets, EmbeddedPostgresError> =>
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
      fail("DataDir", `Cannot read or create ${secretsPath(dataDir)} (the embedded Postgres passwords): ${messageOf(cause)}`, cause)
  })

/**
 * Password authentication, before the server first listens: the superuser's password is set in single-user mode
 * (nothing can connect meanwhile), then pg_hba.conf allows only the unix socket with SCRAM. Done again if a crash
 * came between the two, since the marker line is written last.
 */
export const requirePasswords = (
  bin: Binaries,
  clusterDir: string,
  logFile: string,
  user: OsUser | undefined,
  secrets: Secrets
) =>
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
      catch: (cause) => fail("DataDir", `Cannot write ${hba}: ${messageOf(cause)}`, cause)
    })
  })
