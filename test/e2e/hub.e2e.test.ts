/**
 * `connect hub` as a user runs it: a real process on an embedded Postgres in a temporary CONNECT_HOME, stopped by
 * SIGTERM, restarted on the same data, and recovering after being SIGKILLed with its Postgres still running.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Crypto from "node:crypto"
import Pg from "pg"
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest"
import { isAlive, killTracked, spawn, track, waitUntil } from "../support/processes.ts"
import { rewrites } from "../support/Rewrites.ts"
import { queryOnce } from "../support/TestDatabase.ts"

const LISTENING = /connect hub listening on (http:\/\/127\.0\.0\.1:(\d+)) \(postgres: ([^)]*)\)/

let home: string
let env: NodeJS.ProcessEnv

beforeAll(() => {
  // Not under /root: when running as root, the embedded Postgres runs as the `connect-pg` OS user and must enter it.
  home = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-e2e-"))
  Fs.chmodSync(home, 0o755)
  env = { ...process.env, CONNECT_HOME: home }
  delete env.DATABASE_URL
})

afterAll(() => {
  killTracked()
  Fs.rmSync(home, { recursive: true, force: true })
})

const clusterDir = () => Path.join(home, "hub", "pg")

const postmasterPid = (): number | undefined => {
  try {
    return Number(Fs.readFileSync(Path.join(clusterDir(), "postmaster.pid"), "utf8").split("\n")[0])
  } catch {
    return undefined
  }
}

const startHub = async () => {
  const hub = spawn(process.execPath, ["bin/connect.js", "hub", "--port", "0"], { env })
  const match = await hub.waitFor(LISTENING, 60_000)
  const pid = postmasterPid()
  if (pid !== undefined) track(pid)
  return { hub, url: match[1]!, postgres: match[3]!, postmaster: pid }
}

const secrets = () => JSON.parse(Fs.readFileSync(Path.join(home, "hub", "pg-secrets.json"), "utf8")) as { owner: string; hub: string }

// Straight to the embedded cluster's unix socket as its owner, with the password from the data directory.
const query = (statement: string) =>
  queryOnce({ host: clusterDir(), port: 5432, user: "postgres", password: secrets().owner, database: "postgres" }, statement)

describe("connect hub (real processes, embedded Postgres)", () => {
  it("`connect --help` lists the hub command", async () => {
    const cli = spawn(process.execPath, ["bin/connect.js", "--help"], { env })
    expect(await cli.exited(30_000)).toEqual({ code: 0, signal: null })
    expect(cli.stdout()).toMatch(/^ {2}connect hub {2,}Start the hub$/m)
  })

  it("a bad flag exits 2 with the reason and the usage", async () => {
    const cli = spawn(process.execPath, ["bin/connect.js", "hub", "--port", "notanumber"], { env })
    expect(await cli.exited(30_000)).toEqual({ code: 2, signal: null })
    expect(cli.stderr()).toContain("'notanumber' is not a integer")
    expect(cli.stderr()).toContain("Usage: connect hub [--port integer] [--host text] [--data-dir text]")
  })

  it("--max-streams outside 1..65536 exits 2 with the reason", async () => {
    const cli = spawn(process.execPath, ["bin/connect.js", "hub", "--port", "0", "--max-streams", "0"], { env })
    expect(await cli.exited(30_000)).toEqual({ code: 2, signal: null })
    expect(cli.stderr()).toContain("--max-streams must be between 1 and 65536")
  })

  it("an unreachable DATABASE_URL exits 1 with one line naming the address", async () => {
    const cli = spawn(process.execPath, ["bin/connect.js", "hub", "--port", "0"], {
      env: { ...env, DATABASE_URL: "postgres://postgres:secret@127.0.0.1:1/connect" }
    })
    expect(await cli.exited(30_000)).toEqual({ code: 1, signal: null })
    expect(cli.stderr().trim()).toMatch(/^connect: Cannot reach Postgres at 127\.0\.0\.1:1\/connect \(DATABASE_URL\): .*ECONNREFUSED/)
    expect(cli.stderr().trim().split("\n")).toHaveLength(1)
    expect(cli.stderr()).not.toContain("secret")
  })

  it("starts on embedded Postgres, serves /health, stops cleanly on SIGTERM, restarts on the same data", async () => {
    const first = await startHub()
    expect(first.postgres).toBe(`embedded at ${clusterDir()}`)
    expect(first.postmaster).toBeDefined()
    const response = await fetch(`${first.url}/health`)
    expect(response.status).toBe(200)
    expect(response.headers.get("content-type")).toContain("application/json")
    expect(await response.json()).toEqual({ status: "ok" })
    await query("create table e2e_marker (note text); insert into e2e_marker values ('kept')")
    // Postgres writes to pg.log, never to the hub's console.
    expect(Fs.readFileSync(Path.join(home, "hub", "pg.log"), "utf8")).toContain("ready to accept connections")
    expect(first.hub.stdout() + first.hub.stderr()).not.toContain("ready to accept connections")
    // The hub runs as a role that cannot rewrite history, and says nothing about owning events.
    expect(first.hub.stderr()).not.toContain("WARNING")
    expect(Fs.statSync(Path.join(home, "hub", "pg.log")).mode & 0o777).toBe(0o600)
    expect(Fs.statSync(Path.join(home, "hub", "pg-secrets.json")).mode & 0o777).toBe(0o600)
    const [hubRole] = await query(`select count(*)::int as n from pg_stat_activity where usename = 'connect_hub'`)
    expect(hubRole.n).toBeGreaterThan(0)
    const anonymous = new Pg.Client({ host: clusterDir(), port: 5432, user: "postgres", password: "", database: "postgres" })
    await expect(anonymous.connect()).rejects.toThrow(/password/)

    const stopping = Date.now()
    first.hub.child.kill("SIGTERM")
    expect(await first.hub.exited(10_000)).toEqual({ code: 0, signal: null })
    expect(Date.now() - stopping).toBeLessThan(10_000)
    expect(await waitUntil(() => !isAlive(first.postmaster!), 2_000)).toBe(true)
    expect(Fs.existsSync(Path.join(clusterDir(), "postmaster.pid"))).toBe(false)

    const second = await startHub()
    expect(await query("select note from e2e_marker")).toEqual([{ note: "kept" }])
    expect((await fetch(`${second.url}/health`)).status).toBe(200)
    second.hub.child.kill("SIGTERM")
    expect(await second.hub.exited(10_000)).toEqual({ code: 0, signal: null })
    expect(await waitUntil(() => !isAlive(second.postmaster!), 2_000)).toBe(true)
  }, 120_000)

  it("next to a running hub, `connect audit verify` reads its log and a second hub on the same data is refused", async () => {
    const running = await startHub()
    const verify = spawn(process.execPath, ["bin/connect.js", "audit", "verify"], { env })
    expect(await verify.exited(60_000)).toEqual({ code: 0, signal: null })
    // The bootstrap wrote the default workspace and its admin key on the first start of this data directory, the
    // checkpointer its signing key, and a checkpoint when that hub stopped.
    expect(verify.stdout()).toMatch(/^OK: 4 events, hash chain intact/m)
    // An id typed in upper case is stored and hashed lower-case: the chain still verifies.
    const [{ id }] = await query(`select id::text from workspaces limit 1`)
    const created = spawn(process.execPath, ["bin/connect.js", "hub", "apikey", "create", "--workspace", id.toUpperCase()], { env })
    expect(await created.exited(60_000)).toEqual({ code: 0, signal: null })
    const notUuid = spawn(process.execPath, ["bin/connect.js", "hub", "apikey", "create", "--workspace", "ws-1"], { env })
    expect((await notUuid.exited(60_000)).code).toBe(1)
    expect(notUuid.stderr()).toContain(`the workspace id must be a UUID, got "ws-1"`)
    const again = spawn(process.execPath, ["bin/connect.js", "audit", "verify"], { env })
    expect(await again.exited(60_000)).toEqual({ code: 0, signal: null })
    // The first verify's own record (an AuditRead of kind verify) and the key: two more.
    expect(again.stdout()).toMatch(/^OK: 6 events, hash chain intact/m)
    const second = spawn(process.execPath, ["bin/connect.js", "hub", "--port", "0"], { env })
    expect((await second.exited(60_000)).code).toBe(1)
    expect(second.stderr()).toContain(`another connect hub (pid ${running.hub.pid}) is running with the data directory`)
    // Neither touched the running hub's Postgres.
    expect(isAlive(running.postmaster!)).toBe(true)
    expect((await fetch(`${running.url}/health`)).status).toBe(200)
    running.hub.child.kill("SIGTERM")
    expect(await running.hub.exited(10_000)).toEqual({ code: 0, signal: null })
  }, 120_000)

  it("recovers after the hub is SIGKILLed with its Postgres still running", async () => {
    const killed = await startHub()
    killed.hub.child.kill("SIGKILL")
    await killed.hub.exited(10_000)
    // The orphaned postmaster survives its hub and still holds the cluster.
    expect(isAlive(killed.postmaster!)).toBe(true)

    const recovered = await startHub()
    expect(recovered.hub.stdout()).toContain(`stopping the embedded Postgres (pid ${killed.postmaster}) left running`)
    expect(isAlive(killed.postmaster!)).toBe(false)
    expect(recovered.postmaster).not.toBe(killed.postmaster)
    expect((await fetch(`${recovered.url}/health`)).status).toBe(200)
    expect(await query("select note from e2e_marker")).toEqual([{ note: "kept" }])

    recovered.hub.child.kill("SIGINT")
    expect(await recovered.hub.exited(10_000)).toEqual({ code: 0, signal: null })
    expect(await waitUntil(() => !isAlive(recovered.postmaster!), 2_000)).toBe(true)
  }, 120_000)

  it("on DATABASE_URL with DATABASE_OWNER_URL the hub runs as a role that cannot rewrite history; alone, it is warned", async () => {
    const admin = inject("adminDatabaseUrl")
    const suffix = Crypto.randomBytes(4).toString("hex")
    const [database, role, password] = [`connect_e2e_${suffix}`, `connect_e2e_hub_${suffix}`, Crypto.randomBytes(12).toString("hex")]
    const adminQuery = (statement: string, url = admin) => queryOnce(url, statement)
    const withUser = (user: string, pass?: string) => {
      const url = new URL(admin)
      url.pathname = `/${database}`
      url.username = user
      if (pass !== undefined) url.password = pass
      return url.toString()
    }
    await adminQuery(`create role ${role} login password '${password}'`)
    await adminQuery(`create database ${database}`)
    // A data directory of its own: it belongs to one database (its checkpoint notes sign that database's log).
    const dbHome = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-e2e-db-"))
    Fs.chmodSync(dbHome, 0o755)
    const dbEnv = { ...env, CONNECT_HOME: dbHome }
    try {
      const ownerUrl = withUser(new URL(admin).username || "postgres", decodeURIComponent(new URL(admin).password) || undefined)
      const hubUrl = withUser(role, password)
      const hub = spawn(process.execPath, ["bin/connect.js", "hub", "--port", "0"], {
        env: { ...dbEnv, DATABASE_URL: hubUrl, DATABASE_OWNER_URL: ownerUrl }
      })
      await hub.waitFor(LISTENING, 60_000)
      expect(hub.stderr()).not.toContain("WARNING")
      // The offline commands need only DATABASE_URL, the hub's role.
      const verify = spawn(process.execPath, ["bin/connect.js", "audit", "verify"], { env: { ...dbEnv, DATABASE_URL: hubUrl } })
      expect(await verify.exited(60_000)).toEqual({ code: 0, signal: null })
      // The bootstrap's two events and the signing key's.
      expect(verify.stdout()).toMatch(/^OK: 3 events, hash chain intact/m)
      for (const statement of rewrites) {
        const refused = await adminQuery(statement, hubUrl).then(() => "done", (e: Error) => e.message)
        expect([statement, refused]).not.toEqual([statement, "done"])
      }
      hub.child.kill("SIGTERM")
      expect(await hub.exited(10_000)).toEqual({ code: 0, signal: null })

      // The owner as DATABASE_URL: it runs, and says loudly that it could rewrite history.
      const owning = spawn(process.execPath, ["bin/connect.js", "hub", "--port", "0"], { env: { ...dbEnv, DATABASE_URL: ownerUrl } })
      await owning.waitFor(LISTENING, 60_000)
      expect(owning.stderr()).toMatch(/WARNING: the hub's database role .* owns the events table/)
      owning.child.kill("SIGTERM")
      expect(await owning.exited(10_000)).toEqual({ code: 0, signal: null })
    } finally {
      await adminQuery(`drop database if exists ${database} with (force)`)
      await adminQuery(`drop role if exists ${role}`)
      Fs.rmSync(dbHome, { recursive: true, force: true })
    }
  }, 120_000)

  // As root, Postgres runs as the `connect-pg` OS user, which cannot enter a 0700 directory such as /root.
  it.skipIf(process.getuid?.() !== 0)("as root with a private data dir, the cluster moves to /var/lib/connect behind a symlink", async () => {
    const privateHome = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-e2e-private-"))
    Fs.chmodSync(privateHome, 0o700)
    const link = Path.join(privateHome, "hub", "pg")
    let target: string | undefined
    try {
      const hub = spawn(process.execPath, ["bin/connect.js", "hub", "--port", "0"], {
        env: { ...env, CONNECT_HOME: privateHome }
      })
      const match = await hub.waitFor(LISTENING, 60_000)
      expect(Fs.lstatSync(link).isSymbolicLink()).toBe(true)
      target = Fs.readlinkSync(link)
      expect(target).toMatch(/^\/var\/lib\/connect\/pg-[0-9a-f]{12}$/)
      expect(hub.stdout()).toContain(`the embedded cluster lives in ${target}`)
      const postmaster = Number(Fs.readFileSync(Path.join(target, "postmaster.pid"), "utf8").split("\n")[0])
      track(postmaster)
      expect((await fetch(`${match[1]}/health`)).status).toBe(200)
      hub.child.kill("SIGTERM")
      expect(await hub.exited(10_000)).toEqual({ code: 0, signal: null })
      expect(await waitUntil(() => !isAlive(postmaster), 2_000)).toBe(true)
    } finally {
      killTracked()
      if (target) Fs.rmSync(target, { recursive: true, force: true })
      Fs.rmSync(privateHome, { recursive: true, force: true })
    }
  }, 120_000)
})
