/**
 * `connect audit --stats` as a real process on a real log with no hub following it: the first run rolls the whole
 * log up and answers as of the head, a later run catches up only what was appended since, and a filter that does not
 * go with --stats exits 2 with one line. A running `connect hub` follows the log into the rollups itself.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { PgClient } from "@effect/sql-pg"
import { Effect, Exit, Layer, Scope } from "effect"
import Pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { EventLog } from "../../core/EventLog.ts"
import * as E from "../../core/Events.ts"
import { AgentId, ServiceId, TunnelId, uuidv7, WorkspaceId } from "../../core/Ids.ts"
import * as Database from "../../hub/db/Database.ts"
import * as Migrations from "../../hub/db/Migrations.ts"
import * as PgEventLog from "../../hub/eventlog/PgEventLog.ts"
import { killTracked, spawn } from "../support/processes.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

let scope: Scope.CloseableScope
let url: string
const ws = WorkspaceId.make(uuidv7())
const agentId = AgentId.make(uuidv7())
const serviceId = ServiceId.make(uuidv7())

/** Appends through the hub's writer: `tunnels` tunnels of 1,500 bytes each to `prod-db`, and one coalesced refusal. */
const fill = (tunnels: number) =>
  Effect.runPromise(
    Effect.gen(function*() {
      const log = yield* EventLog
      const meta = new E.EventMeta({ actor: { kind: "agent", id: agentId }, sourceIp: "203.0.113.7" })
      const opts = { expectedVersion: "any" as const, workspaceId: ws, meta }
      for (let i = 0; i < tunnels; i++) {
        const tunnelId = TunnelId.make(uuidv7())
        yield* log.append(`tunnel-${tunnelId}`, [
          new E.TunnelOpened({ tunnelId, serviceId, serviceName: "prod-db", fromAgentId: agentId, toAgentId: agentId }),
          new E.TunnelClosed({ tunnelId, serviceId, bytesUp: 500, bytesDown: 1000, durationMs: 3, reason: "end" })
        ], opts)
      }
      yield* log.append(`deny-${uuidv7()}`, [new E.ReachDenied({ requestedName: "secret-db", fromAgentId: agentId, reason: "not_found", count: 40 })], opts)
    }).pipe(
      Effect.provide(PgEventLog.layer().pipe(
        Layer.provideMerge(Layer.effectDiscard(Migrations.run)),
        Layer.provideMerge(PgClient.layer(Database.pgClientConfig(url)))
      )),
      Effect.scoped
    )
  )

beforeAll(async () => {
  scope = Effect.runSync(Scope.make())
  url = await Effect.runPromise(Scope.extend(TestDatabase.makeTestDatabaseUrl, scope))
  await fill(30)
}, 120_000)

afterAll(async () => {
  killTracked()
  await Effect.runPromise(Scope.close(scope, Exit.void))
})

const connect = (args: ReadonlyArray<string>) =>
  spawn("node", ["bin/connect.js", "audit", ...args], { env: { ...process.env, DATABASE_URL: url } })

describe("connect audit --stats", () => {
  it("rolls the log up on first use and answers as of the head; a later run catches up what was appended since", async () => {
    const first = connect(["--stats", "--json"])
    expect(await first.exited(120_000), first.stderr()).toEqual({ code: 0, signal: null })
    const stats = JSON.parse(first.stdout())
    expect(stats).toMatchObject({
      asOf: 61,
      events: 61,
      denials: [{ type: "ReachDenied", reason: "not_found", count: 40, events: 1 }],
      services: [{ id: serviceId, name: "prod-db", tunnels: 30, bytes: 45_000, denied: 0, events: 60 }],
      addresses: [{ address: "203.0.113.x", count: 100, events: 61, denied: 40 }],
      masked: true
    })
    expect(stats.sparkline).toMatch(/^[▁▂▃▄▅▆▇█]+$/)
    expect(first.stderr()).toBe("")

    await fill(5)
    const later = connect(["--stats", "--by", "service"])
    expect((await later.exited(120_000)).code).toBe(0)
    const text = later.stdout()
    expect(text).toMatch(/^As of position 72: 72 events, all workspaces, the first event to now/)
    expect(text).toMatch(/prod-db\s+35\s+51\.3 KiB\s+0\s+70/)
    expect(text).not.toContain("Events by type")
  }, 300_000)

  it("a running hub follows the log into the rollups, and stops cleanly on SIGTERM", async () => {
    const dataDir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-stats-hub-"))
    const hub = spawn("node", ["bin/connect.js", "hub", "--port", "0", "--data-dir", dataDir], {
      env: { ...process.env, DATABASE_URL: url, CONNECT_HOME: dataDir }
    })
    try {
      await hub.waitFor(/connect hub listening on/, 120_000)
      await fill(3)
      const client = new Pg.Client({ connectionString: url })
      await client.connect()
      const positions = async () => {
        const { rows } = await client.query(
          `select (select max(position) from events)::int as head,
                  (select position from projection_checkpoints where name = 'audit_rollups')::int as rollups`
        )
        return rows[0] as { head: number; rollups: number | null }
      }
      let now = await positions()
      for (const deadline = Date.now() + 30_000; now.rollups !== now.head && Date.now() < deadline;) {
        await new Promise((r) => setTimeout(r, 100))
        now = await positions()
      }
      await client.end()
      expect(now.rollups).toBe(now.head)
      hub.child.kill("SIGTERM")
      expect((await hub.exited(60_000)).code, hub.stderr()).toBe(0)
    } finally {
      Fs.rmSync(dataDir, { recursive: true, force: true })
    }
  }, 300_000)

  it("exits 2 with one line for what does not go with --stats", async () => {
    const cases = [
      [["--stats", "--type", "auth"], /^connect audit: --type does not go with --stats/],
      [["--by", "agent"], /^connect audit: --by goes with --stats/],
      [["--stats", "--by", "bogus"], /^connect audit: --by: must be one of type, agent, service, ip, day/],
      [["--stats", "--since", "yesterday"], /^connect audit: --since: "yesterday" is not a time/]
    ] as const
    const runs = cases.map(([args]) => connect(args))
    for (const [i, [args, message]] of cases.entries()) {
      const bad = runs[i]!
      expect([args.join(" "), (await bad.exited(120_000)).code]).toEqual([args.join(" "), 2])
      expect(bad.stderr()).toMatch(message)
      expect(bad.stdout()).toBe("")
    }
  }, 240_000)
})
