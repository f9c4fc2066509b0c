/**
 * `connect audit access` as an investigator runs it, a real process on a real log: the report "as of position N",
 * the agents that could reach the service then (one disconnected since, one of another workspace never), one --json
 * object with addresses masked; exit 1 naming the near name for an unknown service, exit 2 with one line for a
 * hostile value.
 */
import { PgClient } from "@effect/sql-pg"
import { Effect, Exit, Layer, Redacted, Scope } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { EventLog } from "../../core/EventLog.ts"
import * as E from "../../core/Events.ts"
import { AgentId, Streams, uuidv7, WorkspaceId } from "../../core/Ids.ts"
import { serviceIdFor } from "../../core/ServiceDecider.ts"
import * as Migrations from "../../hub/db/Migrations.ts"
import * as PgEventLog from "../../hub/eventlog/PgEventLog.ts"
import { killTracked, spawn } from "../support/processes.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

let scope: Scope.CloseableScope
let url: string
let between: string
const A = WorkspaceId.make(uuidv7())
const B = WorkspaceId.make(uuidv7())
const box = AgentId.make(uuidv7())
const laptop = AgentId.make(uuidv7())
const stranger = AgentId.make(uuidv7())

/** Appends the story; returns when it was between the laptop's connection and its end. */
const story = Effect.gen(function*() {
  const log = yield* EventLog
  const meta = new E.EventMeta({ actor: { kind: "admin" } })
  const add = (workspaceId: string, stream: string, event: E.Event) =>
    log.append(stream, [event], { expectedVersion: "any", workspaceId, meta })
  const expiresAt = new Date(Date.now() + 86_400_000)
  for (const [w, id, label] of [[A, box, "db-box"], [A, laptop, "laptop"], [B, stranger, "stranger"]] as const) {
    yield* add(w, Streams.agent(id), new E.AgentProvisioned({ agentId: id, label, tokenHash: "d".repeat(64) as E.Sha256Hex, expiresAt }))
    yield* add(w, Streams.agent(id), new E.AgentConnected({ agentId: id, ip: "203.0.113.7", userAgent: "t", transport: "ws" }))
  }
  yield* add(A, Streams.service(serviceIdFor(A, "prod-db")), new E.ServiceExposed({
    serviceId: serviceIdFor(A, "prod-db"), agentId: box, name: "prod-db", targetHost: "10.0.0.5", targetPort: 5432
  }))
  yield* Effect.sleep("20 millis")
  const at = new Date().toISOString()
  yield* Effect.sleep("20 millis")
  yield* add(A, Streams.agent(laptop), new E.AgentDisconnected({ agentId: laptop, reason: "closed", durationMs: 9 }))
  return at
})

beforeAll(async () => {
  scope = Effect.runSync(Scope.make())
  url = await Effect.runPromise(Scope.extend(TestDatabase.makeTestDatabaseUrl, scope))
  between = await Effect.runPromise(story.pipe(
    Effect.provide(PgEventLog.layer().pipe(
      Layer.provideMerge(Layer.effectDiscard(Migrations.run)),
      Layer.provideMerge(PgClient.layer({ url: Redacted.make(url) }))
    )),
    Effect.scoped
  ))
})

afterAll(async () => {
  killTracked()
  await Effect.runPromise(Scope.close(scope, Exit.void))
})

const access = (args: ReadonlyArray<string>) =>
  spawn("node", ["bin/connect.js", "audit", "access", ...args], { env: { ...process.env, DATABASE_URL: url } })

describe("connect audit access", () => {
  it("reports who could reach the service then, as of its position; --json is one object, addresses masked", async () => {
    // Started together: each process's start is most of its time on a loaded machine.
    const then = access(["--service", "prod-db", "--at", between])
    const now = access(["--service", "prod-db", "--at", "0s", "--json"])
    expect((await then.exited(120_000)).code).toBe(0)
    const report = then.stdout()
    expect(report).toMatch(/^Who could reach prod-db at \S+\nas of position 7 \(recorded_at \S+\)\n/)
    expect(report).toMatch(/reachable\s+yes/)
    expect(report).toMatch(/\ndb-box\s+\S+\s+\S+\s+203\.0\.113\.x\s+ws\s/)
    expect(report).toMatch(/\nlaptop\s/)
    expect(report).not.toContain("stranger")
    expect(report).toContain("Shares valid then: none")

    expect((await now.exited(120_000)).code).toBe(0)
    const answer = JSON.parse(now.stdout())
    expect(answer).toMatchObject({ asOf: { position: 8 }, reachable: true, service: { name: "prod-db", workspaceId: A, agentLabel: "db-box" } })
    expect(answer.agents.map((a: { label: string }) => a.label)).toEqual(["db-box"])
    expect(now.stdout()).not.toContain("203.0.113.7")
  }, 240_000)

  it("exits 1 naming the near name for an unknown service, 2 with one line for a hostile value", async () => {
    const cases = [
      [["--service", "prod-bd", "--at", "0s"], 1, /^connect audit access: no service "prod-bd" had been exposed as of position 8 \(.*\); did you mean prod-db\?$/],
      [["--service", "prod\u0001db", "--at", "0s"], 2, /^connect audit: --service: contains a control character$/],
      [["--service", "x".repeat(100_000), "--at", "0s"], 2, /^connect audit: --service: too long/],
      [["--service", "prod-db", "--at", "last tuesday"], 2, /^connect audit: --at: "last tuesday" is not a time/],
      [["--service", "prod-db", "--at", "2001-01-01"], 1, /^connect audit access: the log holds no event recorded at or before 2001-01-01/]
    ] as const
    const runs = cases.map(([args]) => access(args))
    for (const [i, [args, code, message]] of cases.entries()) {
      const run = runs[i]!
      expect([args[1].slice(0, 20), (await run.exited(120_000)).code]).toEqual([args[1].slice(0, 20), code])
      expect(run.stderr().trim()).toMatch(message)
      expect(run.stdout()).toBe("")
    }
  }, 240_000)
})
