/**
 * `connect audit export` as real processes on a real log: SIGKILLed at random points while it ships a few thousand
 * events to a real rsyslog (or appends them to a file) and started again each time, the union of what arrived holds
 * every event, duplicates only by event id; --follow stopped by SIGTERM exits 0 with its cursor where the sink
 * confirmed and records its run once; a hostile cursor file is one line and exit 1.
 */
import { PgClient } from "@effect/sql-pg"
import * as ChildProcess from "node:child_process"
import { Effect, Exit, Layer, Redacted, Scope } from "effect"
import * as Fs from "node:fs"
import type * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Tls from "node:tls"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Cursor from "../../audit/export/Cursor.ts"
import { EventLog, type StoredEvent } from "../../core/EventLog.ts"
import { EventMeta, WorkspaceCreated } from "../../core/Events.ts"
import { uuidv7, WorkspaceId } from "../../core/Ids.ts"
import * as Database from "../../hub/db/Database.ts"
import * as Migrations from "../../hub/db/Migrations.ts"
import * as PgEventLog from "../../hub/eventlog/PgEventLog.ts"
import { killTracked, spawn, type Spawned } from "../support/processes.ts"
import { type Rsyslog, startRsyslog } from "../support/Rsyslog.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

const EVENTS = 3000
const KILLS = 3

let scope: Scope.CloseableScope
let url: string
let rsyslog: Rsyslog
let dir: string

const withLog = <A, E>(effect: Effect.Effect<A, E, EventLog>) =>
  Effect.runPromise(
    effect.pipe(
      Effect.provide(
        PgEventLog.layer().pipe(
          Layer.provideMerge(Layer.effectDiscard(Migrations.run)),
          Layer.provideMerge(PgClient.layer(Database.pgClientConfig(url)))
        )
      ),
      Effect.scoped
    )
  )

/** Every stored event, in position order. */
const allEvents = () =>
  withLog(Effect.flatMap(EventLog, (log) => log.readAll(0, 1_000_000))) as Promise<ReadonlyArray<StoredEvent>>

const appendWorkspaces = (n: number, name: (i: number) => string) =>
  withLog(Effect.flatMap(EventLog, (log) =>
    Effect.forEach(Array.from({ length: Math.ceil(n / 100) }), (_, b) =>
      log.append(`ws-${uuidv7()}`, Array.from({ length: Math.min(100, n - b * 100) }, (_, k) =>
        new WorkspaceCreated({ workspaceId: WorkspaceId.make(uuidv7()), name: name(b * 100 + k) })), {
        expectedVersion: "any",
        workspaceId: null,
        meta: new EventMeta({ actor: { kind: "admin" } })
      }), { discard: true })))

beforeAll(async () => {
  scope = Effect.runSync(Scope.make())
  url = await Effect.runPromise(Scope.extend(TestDatabase.makeTestDatabaseUrl, scope))
  dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-export-e2e-"))
  // Hostile names: quotes, brackets, pipes, equals, backslashes, control characters, non-ASCII.
  await appendWorkspaces(EVENTS, (i) => i % 10 === 0 ? `w${i} "q" ] | = \\ \n\t Zürich ☃` : `w${i}`)
  rsyslog = await startRsyslog()
}, 660_000)

afterAll(async () => {
  killTracked()
  await rsyslog?.stop()
  Fs.rmSync(dir, { recursive: true, force: true })
  await Effect.runPromise(Scope.close(scope, Exit.void))
}, 60_000)

const exporter = (args: ReadonlyArray<string>) =>
  spawn("node", ["bin/connect.js", "audit", "export", ...args], { env: { ...process.env, DATABASE_URL: url } })

const cursorAt = (path: string): number => {
  try {
    return JSON.parse(Fs.readFileSync(path, "utf8")).position
  } catch {
    return 0
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Runs the exporter `KILLS` times, each SIGKILLed once its cursor passed a random point ahead (plus up to 30 ms more,
 * so that some kills land mid-batch), then once to the end; returns the kill points and the final position.
 */
const killAndResume = async (args: ReadonlyArray<string>, cursor: string) => {
  const kills: Array<string> = []
  for (let round = 0; round < KILLS; round++) {
    const from = cursorAt(cursor)
    const target = from + 1 + Math.floor(Math.random() * Math.max(1, (EVENTS - from) / 2))
    const run = exporter(args)
    const deadline = Date.now() + 60_000
    while (cursorAt(cursor) < target && run.child.exitCode === null && Date.now() < deadline) await sleep(5)
    await sleep(Math.floor(Math.random() * 30))
    run.child.kill("SIGKILL")
    const { signal, code } = await run.exited(30_000)
    kills.push(`${from}→${cursorAt(cursor)} (${signal ?? `exit ${code}`})`)
  }
  const last = exporter(args)
  const done = await last.exited(60_000)
  expect(done.code, last.stderr()).toBe(0)
  return { kills, last }
}

describe("connect audit export, killed and restarted", () => {
  it("to a real rsyslog: the union of what it wrote has every event, duplicates only by id", async () => {
    const cursor = Path.join(dir, "syslog.cursor")
    const args = ["--format", "syslog", "--syslog", `tcp://127.0.0.1:${rsyslog.port}`, "--cursor", cursor, "--batch-size", "100"]
    const { kills, last } = await killAndResume(args, cursor)
    expect(last.stderr()).toMatch(/^exported \d+ events .*as syslog to tcp:\/\/127\.0\.0\.1:\d+ .*; cursor .* at \d+$/m)
    const events = await allEvents()
    const upTo = cursorAt(cursor)
    // Everything before the last run's own AuditRead (which only the next run exports).
    expect(upTo).toBe(events.length - 1)
    const wanted = events.filter((e) => e.position <= upTo)
    const lines = rsyslog.lines()
    const byId = new Map<string, Set<string>>()
    for (const line of lines) {
      const id = / id="([0-9a-f-]{36})"/.exec(line)?.[1]
      expect(id, `a line without an event id: ${line.slice(0, 200)}`).toBeDefined()
      if (!byId.has(id!)) byId.set(id!, new Set())
      byId.get(id!)!.add(line)
    }
    const missing = wanted.filter((e) => !byId.has(e.id)).map((e) => e.position)
    expect(missing, `kills: ${kills.join(", ")}`).toEqual([])
    // A duplicate is the same record again, byte for byte.
    for (const [id, variants] of byId) expect(variants.size, id).toBe(1)
    expect(byId.size).toBe(wanted.length)
    console.log(`syslog: ${lines.length} lines for ${wanted.length} events; kills at ${kills.join(", ")}`)
  }, 240_000)

  it("to a file: every event, duplicates only by id, every line a whole record", async () => {
    const cursor = Path.join(dir, "file.cursor")
    const output = Path.join(dir, "export.jsonl")
    const args = ["--format", "jsonl", "--output", output, "--cursor", cursor, "--batch-size", "100"]
    const { kills } = await killAndResume(args, cursor)
    const upTo = cursorAt(cursor)
    const wanted = (await allEvents()).filter((e) => e.position <= upTo)
    const lines = Fs.readFileSync(output, "utf8").split("\n").slice(0, -1)
    const byId = new Map<string, Set<string>>()
    let torn = 0
    for (const line of lines) {
      let record: { id: string; position: number }
      try {
        record = JSON.parse(line)
      } catch {
        // A record torn by a SIGKILL mid-write stays alone on its line, and is sent again whole.
        torn++
        continue
      }
      if (!byId.has(record.id)) byId.set(record.id, new Set())
      byId.get(record.id)!.add(line)
    }
    expect(wanted.filter((e) => !byId.has(e.id)).map((e) => e.position), `kills: ${kills.join(", ")}`).toEqual([])
    for (const [id, variants] of byId) expect(variants.size, id).toBe(1)
    expect(torn).toBeLessThanOrEqual(KILLS)
    console.log(`file: ${lines.length} lines (${torn} torn) for ${wanted.length} events; kills at ${kills.join(", ")}`)
  }, 240_000)
})

describe("connect audit export over TLS", () => {
  it("--syslog tls:// with --ca-cert delivers every event; without it the untrusted server is refused, exit 1", async () => {
    // A self-signed certificate for 127.0.0.1, and a TLS syslog receiver that reads octet-counted frames.
    ChildProcess.execFileSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
      "-subj", "/CN=connect e2e syslog", "-addext", "subjectAltName=IP:127.0.0.1",
      "-keyout", Path.join(dir, "key.pem"), "-out", Path.join(dir, "cert.pem")
    ], { stdio: "ignore", timeout: 20_000 })
    let received = Buffer.alloc(0)
    const sockets = new Set<Net.Socket>()
    const server = Tls.createServer({ key: Fs.readFileSync(Path.join(dir, "key.pem")), cert: Fs.readFileSync(Path.join(dir, "cert.pem")) }, (socket) => {
      sockets.add(socket)
      socket.on("data", (chunk: Buffer) => (received = Buffer.concat([received, chunk])))
      // A syslog server closes its side once the client has, after reading everything: the sink's confirmation.
      socket.on("end", () => socket.end())
      socket.on("error", () => {})
      socket.on("close", () => sockets.delete(socket))
    })
    const port = await new Promise<number>((resolve) => server.listen(0, "127.0.0.1", () => resolve((server.address() as Net.AddressInfo).port)))
    try {
      const trusted = exporter(["--format", "ocsf", "--syslog", `tls://127.0.0.1:${port}`, "--ca-cert", Path.join(dir, "cert.pem")])
      const untrusted = exporter(["--format", "ocsf", "--syslog", `tls://127.0.0.1:${port}`, "--cursor", Path.join(dir, "tls.cursor")])
      expect((await trusted.exited(120_000)).code, trusted.stderr()).toBe(0)
      expect((await untrusted.exited(120_000)).code, untrusted.stderr()).toBe(1)
      expect(untrusted.stderr()).toMatch(/^connect audit export: syslog tls:\/\/127\.0\.0\.1:\d+: TLS handshake failed/)
      expect(Fs.existsSync(Path.join(dir, "tls.cursor"))).toBe(false)
      const count = Number(/^exported (\d+) events/.exec(trusted.stderr())![1])
      const ids = new Set<string>()
      for (let at = 0; at < received.length;) {
        const space = received.indexOf(0x20, at)
        const length = Number(received.subarray(at, space).toString("latin1"))
        const message = received.subarray(space + 1, space + 1 + length).toString("utf8")
        ids.add(/ id="([0-9a-f-]{36})"/.exec(message)![1]!)
        at = space + 1 + length
      }
      expect(ids.size).toBe(count)
      expect(count).toBeGreaterThanOrEqual(EVENTS)
    } finally {
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => server.close(resolve))
    }
  }, 180_000)
})

describe("connect audit export --follow", () => {
  it("exports new events as they come, stops on SIGTERM with exit 0 and its cursor confirmed, recorded once", async () => {
    const cursor = Path.join(dir, "follow.cursor")
    const output = Path.join(dir, "follow.jsonl")
    const before = (await allEvents()).length
    const follow: Spawned = exporter(["--follow", "--output", output, "--cursor", cursor, "--json"])
    const deadline = Date.now() + 60_000
    while (cursorAt(cursor) < before && Date.now() < deadline) await sleep(50)
    expect(cursorAt(cursor)).toBe(before)
    await appendWorkspaces(5, (i) => `late-${i}`)
    while (cursorAt(cursor) < before + 5 && Date.now() < deadline) await sleep(50)
    follow.child.kill("SIGTERM")
    expect((await follow.exited(30_000)).code, follow.stderr()).toBe(0)
    const summary = JSON.parse(follow.stderr().trim().split("\n").pop()!)
    expect(summary).toMatchObject({ outcome: "stopped", format: "jsonl", sink: output, count: before + 5, fromPosition: 1, toPosition: before + 5 })
    const events = await allEvents()
    // One AuditRead for the session, after everything it exported: it did not export itself.
    expect(events.length).toBe(before + 6)
    const read = events[events.length - 1]!
    expect(read.type).toBe("AuditRead")
    expect(JSON.parse(read.dataJson)).toEqual({
      kind: "export",
      count: before + 5,
      filters: { format: "jsonl", sink: "file", follow: "true" },
      fromPosition: 1,
      toPosition: before + 5
    })
    expect(JSON.parse(read.metaJson)).toEqual({ actor: { kind: "admin" } })
    const exported = Fs.readFileSync(output, "utf8").trim().split("\n").map((l) => JSON.parse(l).position)
    expect(exported).toEqual(Array.from({ length: before + 5 }, (_, i) => i + 1))
  }, 120_000)

  it("flags that do not go together, or a target that is not one, are one line and exit 2", async () => {
    const cases: ReadonlyArray<[ReadonlyArray<string>, RegExp]> = [
      [["--output", Path.join(dir, "o"), "--syslog", "tcp://127.0.0.1:1"], /^connect audit: --output and --syslog: choose one$/],
      [["--syslog", "tcp://127.0.0.1:1", "--ca-cert", "ca.pem"], /^connect audit: --ca-cert goes with --syslog tls:\/\/HOST:PORT$/],
      [["--syslog", "udp://user:secret@127.0.0.1:514"], /^connect audit: invalid syslog target udp:\/\/…@127\.0\.0\.1:514: unsupported scheme udp:/],
      [["--syslog", "tcp://user:secret@127.0.0.1:514"], /^connect audit: invalid syslog target tcp:\/\/…@127\.0\.0\.1:514: only a host and a port/]
    ]
    const runs = cases.map(([args]) => exporter(args))
    for (const [i, [args, message]] of cases.entries()) {
      const run = runs[i]!
      expect([args[0], (await run.exited(120_000)).code], run.stderr()).toEqual([args[0], 2])
      expect(run.stderr().trim()).toMatch(message)
      expect(run.stderr()).not.toContain("secret")
    }
  }, 180_000)

  it("a hostile or foreign cursor file is one line and exit 1, nothing exported", async () => {
    const cases: ReadonlyArray<[string | Buffer, RegExp]> = [
      [Buffer.alloc(1024 * 1024), /^connect audit export: cursor file .*: it holds over 4096 bytes: not a cursor file/],
      ["\u0000\u0000", /^connect audit export: cursor file .*: it holds NUL bytes/],
      [`{"position":-3,"hash":"${"0".repeat(64)}"}`, /^connect audit export: cursor file .*: it is not a cursor: position must be a whole number ≥ 0/],
      [Cursor.render({ position: 2, hash: "ab".repeat(32) }), /^connect audit export: cursor file .* stands at position 2, but the log holds another event there/]
    ]
    const runs = cases.map(([content], i) => {
      const path = Path.join(dir, `hostile-${i}.cursor`)
      Fs.writeFileSync(path, content)
      return exporter(["--cursor", path, "--output", Path.join(dir, `hostile-${i}.jsonl`)])
    })
    for (const [i, [, message]] of cases.entries()) {
      const run = runs[i]!
      expect((await run.exited(120_000)).code, run.stderr()).toBe(1)
      expect(run.stderr()).toMatch(message)
      expect(run.stderr().trim().split("\n")).toHaveLength(1)
      expect(Fs.existsSync(Path.join(dir, `hostile-${i}.jsonl`)) ? Fs.readFileSync(Path.join(dir, `hostile-${i}.jsonl`), "utf8") : "").toBe("")
    }
  }, 180_000)
})
