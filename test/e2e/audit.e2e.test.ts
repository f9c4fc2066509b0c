/**
 * `connect audit` as an investigator runs it, as a real process against a real log: filtered records as --jsonl and
 * --json, a masked table, exit code 2 with a one-line reason for a bad filter, and --follow printing a new event
 * as it is committed until Ctrl-C.
 */
import { PgClient } from "@effect/sql-pg"
import { Effect, Exit, Layer, Redacted, Scope } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { EventLog } from "../../core/EventLog.ts"
import { AgentAuthFailed, EventMeta, WorkspaceCreated } from "../../core/Events.ts"
import { uuidv7, WorkspaceId } from "../../core/Ids.ts"
import * as Migrations from "../../hub/db/Migrations.ts"
import * as PgEventLog from "../../hub/eventlog/PgEventLog.ts"
import { killTracked, spawn } from "../support/processes.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

let scope: Scope.CloseableScope
let url: string

const append = (ip: string) =>
  Effect.runPromise(
    Effect.flatMap(EventLog, (log) =>
      log.append(`auth-${uuidv7()}`, [new AgentAuthFailed({ reason: "unknown_token", ip })], {
        expectedVersion: "any",
        workspaceId: null,
        meta: new EventMeta({ actor: { kind: "public" }, sourceIp: ip })
      })).pipe(
        Effect.provide(
          PgEventLog.layer().pipe(
            Layer.provideMerge(Layer.effectDiscard(Migrations.run)),
            Layer.provideMerge(PgClient.layer({ url: Redacted.make(url) }))
          )
        ),
        Effect.scoped
      )
  )

beforeAll(async () => {
  scope = Effect.runSync(Scope.make())
  url = await Effect.runPromise(Scope.extend(TestDatabase.makeTestDatabaseUrl, scope))
  await Effect.runPromise(
    Effect.flatMap(EventLog, (log) =>
      Effect.forEach([1, 2, 3], (i) =>
        log.append(`ws-${i}`, [new WorkspaceCreated({ workspaceId: WorkspaceId.make(uuidv7()), name: `w${i}` })], {
          expectedVersion: "any",
          workspaceId: null,
          meta: new EventMeta({ actor: { kind: "admin" } })
        }))).pipe(
        Effect.provide(
          PgEventLog.layer().pipe(
            Layer.provideMerge(Layer.effectDiscard(Migrations.run)),
            Layer.provideMerge(PgClient.layer({ url: Redacted.make(url) }))
          )
        ),
        Effect.scoped
      )
  )
  await append("203.0.113.7")
})

afterAll(async () => {
  killTracked()
  await Effect.runPromise(Scope.close(scope, Exit.void))
})

const connect = (args: ReadonlyArray<string>) =>
  spawn("node", ["bin/connect.js", "audit", ...args], { env: { ...process.env, DATABASE_URL: url } })

describe("connect audit", () => {
  it("prints filtered records as --jsonl and --json, addresses masked unless --reveal-ips", async () => {
    const jsonl = connect(["--type", "admin", "--limit", "2", "--jsonl"])
    expect(await jsonl.exited(60_000)).toEqual({ code: 0, signal: null })
    const lines = jsonl.stdout().trim().split("\n").map((l) => JSON.parse(l))
    expect(lines.map((l) => [l.position, l.type])).toEqual([[3, "WorkspaceCreated"], [2, "WorkspaceCreated"]])
    expect(lines[0]).toMatchObject({ prevHash: lines[1].hash, stream: "ws-3", workspace: null })

    const json = connect(["--outcome", "denied", "--json"])
    expect((await json.exited(60_000)).code).toBe(0)
    const records = JSON.parse(json.stdout())
    expect(records).toMatchObject([{ position: 4, type: "AgentAuthFailed", outcome: "denied", data: { ip: "203.0.113.x" }, meta: { sourceIp: "203.0.113.x" } }])
    expect(json.stdout()).not.toContain("203.0.113.7")

    const revealed = connect(["--ip", "203.0.113.0/24", "--json", "--reveal-ips"])
    expect((await revealed.exited(60_000)).code).toBe(0)
    expect(JSON.parse(revealed.stdout())).toMatchObject([{ position: 4, meta: { sourceIp: "203.0.113.7" } }])
  }, 240_000)

  it("prints a table, newest first, the source masked", async () => {
    const table = connect([])
    expect((await table.exited(60_000)).code).toBe(0)
    const lines = table.stdout().trim().split("\n")
    expect(lines[0]).toMatch(/^TIME\s+POSITION\s+TYPE\s+ACTOR\s+TARGET\s+OUTCOME\s+SOURCE$/)
    expect(lines[1]).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\s+4\s+AgentAuthFailed\s+public\s+denied\s+203\.0\.113\.x$/)
    expect(lines.slice(2).map((l) => l.split(/\s+/)[2])).toEqual(["3", "2", "1"])
  })

  it("exits 2 with a one-line reason for a bad filter, never an SQL error", async () => {
    const cases = [
      [["--ip", "203.0.113.999"], /^connect audit: --ip: "203\.0\.113\.999" is not an address or prefix/],
      [["--type", "Bogus"], /^connect audit: --type: unknown type or group "Bogus"/],
      [["--since", "last tuesday"], /^connect audit: --since: "last tuesday" is not a time/],
      [["--agent", "x".repeat(100_000)], /^connect audit: --agent: too long/],
      [["--json", "--follow"], /^connect audit: --follow prints a table or --jsonl/]
    ] as const
    // Started together: each process's start is most of its time on a loaded machine.
    const runs = cases.map(([args]) => connect(args))
    for (const [i, [args, message]] of cases.entries()) {
      const bad = runs[i]!
      expect([args[0], (await bad.exited(120_000)).code]).toEqual([args[0], 2])
      expect(bad.stderr()).toMatch(message)
      expect(bad.stderr()).not.toMatch(/SqlError|database error|unexpected/)
      expect(bad.stdout()).toBe("")
    }
  }, 180_000)

  it("--follow prints the last --limit, then each new matching event, until Ctrl-C", async () => {
    const follow = connect(["--follow", "--jsonl", "--type", "auth", "--limit", "1"])
    await follow.waitFor(/"position":4/, 60_000)
    // Give the subscription a moment to start listening; it catches up by position anyway.
    await new Promise((r) => setTimeout(r, 500))
    await append("198.51.100.20")
    await follow.waitFor(/"position":5/, 30_000)
    follow.child.kill("SIGINT")
    expect((await follow.exited(30_000)).code).toBe(0)
    const lines = follow.stdout().trim().split("\n").map((l) => JSON.parse(l))
    expect(lines.map((l) => l.position)).toEqual([4, 5])
    expect(lines[1].meta.sourceIp).toBe("198.51.100.x")
  }, 180_000)
})
