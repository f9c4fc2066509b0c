/**
 * `GET /v1/audit/stats` on a real hub running as a role that is only a member of `connect_writer` (as the hub's
 * runtime role is): a workspace key's numbers are its own workspace's only (row-level security on the rollups), an
 * operator key's every workspace's or the one it names; each answer is one `AuditRead` of kind `stats`; the answer is
 * the rollups as of their position, not caught up inside the request; hostile values are a clear 400 and no read.
 */
import * as Net from "node:net"
import * as PgClient from "@effect/sql-pg/PgClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as AuditApi from "../../audit/AuditApi.ts"
import * as PgStats from "../../audit/PgStats.ts"
import * as StatsProjection from "../../audit/StatsProjection.ts"
import type { StoredEvent } from "../../core/EventLog.ts"
import * as Admin from "../../hub/commands/Admin.ts"
import { DEFAULT_WORKSPACE_ID } from "../../hub/commands/Bootstrap.ts"
import * as Database from "../../hub/db/Database.ts"
import * as Migrations from "../../hub/db/Migrations.ts"
import * as ProjectionRunner from "../../hub/eventlog/ProjectionRunner.ts"
import * as Hub from "../support/Hub.ts"
import * as TestDatabase from "../support/TestDatabase.ts"
import { writerRoleUrl } from "../support/WriterAttack.ts"

/** Two workspaces with a key and an agent each (A's label a secret B must not learn), an operator key, a refused key. */
const world = Effect.gen(function*() {
  const url = yield* TestDatabase.makeTestDatabaseUrl
  yield* Effect.provide(Migrations.run, PgClient.layer(Database.pgClientConfig(url))).pipe(Effect.orDie)
  const hub = yield* Hub.start({ databaseUrl: yield* writerRoleUrl(url), auditRoutes: AuditApi.layer })
  const a = yield* hub.workspace("a")
  const b = yield* hub.workspace("b")
  const operator = (yield* hub.run(Admin.createApiKey(DEFAULT_WORKSPACE_ID, "ops", "operator")).pipe(Effect.orDie)).key
  const agentA = (yield* hub.http("POST", "/v1/agents", a.apiKey, { label: "alpha-secret" })).body
  yield* hub.http("POST", "/v1/agents", a.apiKey, { label: "alpha-two" })
  const agentB = (yield* hub.http("POST", "/v1/agents", b.apiKey, { label: "bravo" })).body
  expect((yield* hub.http("GET", "/v1/agents", `pc_${"z".repeat(40)}`)).status).toBe(401)
  // As the hub's follower would: the rollups at the head.
  const catchUp = hub.run(ProjectionRunner.catchUp(StatsProjection.projection)).pipe(Effect.orDie)
  yield* catchUp
  return { hub, a, b, operator, agentA, agentB, catchUp }
})

/** `GET /v1/audit/stats?<params>` with `key`. */
const stats = (hub: Hub.TestHub, key: string, params: Record<string, string> | string = {}) =>
  hub.http("GET", `/v1/audit/stats?${new URLSearchParams(params).toString()}`, key)

const reads = (all: ReadonlyArray<StoredEvent>) => all.filter((e) => e.event._tag === "AuditRead")

describe("GET /v1/audit/stats", () => {
  it.scopedLive("a workspace key counts its own workspace only, whatever it asks; an operator key counts every workspace or the one named", () =>
    Effect.gen(function*() {
      const { a, agentA, agentB, b, hub, operator } = yield* world
      const all = yield* hub.events
      const asOf = all[all.length - 1]!.position

      const mine = yield* stats(hub, b.apiKey)
      expect(mine.status).toBe(200)
      expect(mine.body).toMatchObject({ asOf, workspace: b.workspaceId })
      expect(mine.body.events).toBe(all.filter((e) => e.workspaceId === b.workspaceId).length)
      expect(mine.body.agents.map((r: { id: string; label: string }) => [r.id, r.label])).toEqual([[agentB.agentId, "bravo"]])
      // Nothing of A's, nor of the hub-level refusal, in any breakdown.
      for (const by of ["", ...["type", "agent", "service", "ip", "day"]]) {
        const answer = yield* stats(hub, b.apiKey, by === "" ? { since: "1h" } : { by, limit: "10000", reveal: "true" })
        expect(answer.status, by).toBe(200)
        const text = JSON.stringify(answer.body)
        expect(text, by).not.toContain("alpha")
        expect(text, by).not.toContain(agentA.agentId)
        expect(text, by).not.toContain(a.workspaceId)
        expect(answer.body.byType.map((r: { type: string }) => r.type), by).not.toContain("ApiKeyAuthFailed")
      }
      // Naming its own workspace changes nothing; naming A is refused (403), not answered with A's numbers.
      expect((yield* stats(hub, b.apiKey, { workspace: b.workspaceId.toUpperCase() })).body).toEqual(mine.body)
      expect(yield* stats(hub, b.apiKey, { workspace: a.workspaceId })).toEqual({
        status: 403,
        body: { error: { code: "Forbidden", message: `this API key reads its own workspace (${b.workspaceId}) only` } }
      })

      // Row-level security alone: B's role and setting count nothing of A's, even asked for A by id.
      const underB = yield* hub.run(PgStats.queryInWorkspace(b.workspaceId, { workspace: a.workspaceId, limit: 50, reveal: true }))
        .pipe(Effect.orDie)
      expect(underB).toMatchObject({ events: 0, agents: [], byType: [], first: null, last: null })

      // The operator: every workspace and the hub-level events; B alone is exactly what B's key sees.
      const everything = (yield* stats(hub, operator, { by: "agent" })).body
      expect(everything).toMatchObject({ asOf, workspace: null, events: asOf })
      expect(everything.agents.map((r: { label: string }) => r.label).sort()).toEqual(["alpha-secret", "alpha-two", "bravo"])
      expect((yield* stats(hub, operator)).body.byType.map((r: { type: string }) => r.type)).toContain("ApiKeyAuthFailed")
      expect((yield* stats(hub, operator, { workspace: b.workspaceId })).body).toEqual(mine.body)
      const ofA = (yield* stats(hub, operator, { workspace: a.workspaceId })).body
      expect(ofA.events).toBe(all.filter((e) => e.workspaceId === a.workspaceId).length)
      expect(ofA.agents.map((r: { label: string }) => r.label).sort()).toEqual(["alpha-secret", "alpha-two"])
    }), 300_000)

  it.scopedLive("records each answer as one AuditRead (stats) with its options and count; answers as of the rollups' position", () =>
    Effect.gen(function*() {
      const { a, b, catchUp, hub, operator } = yield* world
      const before = reads(yield* hub.events).length
      const first = yield* stats(hub, b.apiKey, { since: "2h", by: "type", limit: "5" })
      expect(first.status).toBe(200)
      const second = yield* stats(hub, operator, { workspace: a.workspaceId, reveal: "true" })
      expect(second.status).toBe(200)
      // Refused requests read nothing: a bad value, another workspace, an unknown key.
      expect((yield* stats(hub, b.apiKey, { by: "bogus" })).status).toBe(400)
      expect((yield* stats(hub, b.apiKey, { workspace: a.workspaceId })).status).toBe(403)
      expect((yield* stats(hub, `pc_${"q".repeat(40)}`)).status).toBe(401)
      const after = reads(yield* hub.events).slice(before)
      expect(after.map((e) => [e.event, e.workspaceId])).toMatchObject([
        [{ kind: "stats", filters: { since: "2h", by: "type", limit: "5" }, count: first.body.events }, b.workspaceId],
        // The operator's read names workspace A: hub-level, so no workspace key reads it.
        [{ kind: "stats", filters: { workspace: a.workspaceId, reveal: "true" }, count: second.body.events }, null]
      ])
      expect(after[0]!.meta).toMatchObject({ actor: { kind: "apikey" }, sourceIp: "127.0.0.1" })

      // Not caught up inside a request: the reads just recorded are past the rollups' position until the follower
      // (here: the test) rolls them up.
      const head = (yield* hub.events).at(-1)!.position
      const behind = (yield* stats(hub, b.apiKey, { by: "type" })).body
      expect(behind.asOf).toBe(first.body.asOf)
      expect(behind.asOf).toBeLessThan(head)
      yield* catchUp
      const current = (yield* stats(hub, b.apiKey, { by: "type" })).body
      expect(current.asOf).toBe(head + 1)
      expect(current.byType).toContainEqual({ type: "AuditRead", outcome: "allowed", events: 2, count: 2 })
    }), 300_000)
})

/** A raw query string and the message (a substring) its 400 must carry. */
const HOSTILE: ReadonlyArray<readonly [string, string]> = [
  ["since=2h%00", "since: contains a control character"],
  ["until=%00", "until: contains a control character"],
  ["since=5x", `since: "5x" is not a time`],
  ["since=-1h", `since: "-1h" is not a time`],
  ["since=99999999d", `since: "99999999d" is not a time`],
  ["since=1.5h", `since: "1.5h" is not a time`],
  ["since=2026-02-30", "is not a time"],
  ["since=%ED%A0%80", "is not a time"],
  ["since=1h&until=2d", "since: is after until"],
  [`since=${"9".repeat(15_000)}`, "since: too long"],
  ["by=bogus", "by: must be one of type, agent, service, ip, day"],
  ["by=type%00", "by: must be one of"],
  ["by=type&by=agent", "by: Expected string"],
  [`by=${"a".repeat(10_000)}`, "by: must be one of"],
  ["workspace=../../etc", "workspace: is not a workspace id"],
  [`workspace=${"0".repeat(10_000)}`, "workspace: is not a workspace id"],
  ["limit=0", "limit: must be a whole number from 1 to 10000"],
  ["limit=10001", "limit: must be a whole number from 1 to 10000"],
  ["limit=1.5", "limit: must be a whole number from 1 to 10000"],
  ["limit=NaN", "limit: must be a whole number from 1 to 10000"],
  ["limit=abc", "limit: Unable to decode"],
  ["reveal=yes", "reveal: Expected"],
  ["outcome=denied", "outcome: is unexpected"],
  ["type=agent", "type: is unexpected"]
]

const get = (url: string, key: string) =>
  Effect.promise(async () => {
    const response = await fetch(url, { headers: { authorization: `Bearer ${key}` } })
    const text = await response.text()
    return { status: response.status, body: text === "" ? undefined : JSON.parse(text) }
  })

/** `GET path` on a raw socket, read until the server closes: the status (0 if it reset the connection first). */
const rawGet = (port: number, path: string, key: string) =>
  Effect.async<{ status: number; body: string }>((resume) => {
    const socket = Net.connect(port, "127.0.0.1")
    let answer = ""
    const finish = () => {
      socket.destroy()
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0)
      resume(Effect.succeed({ status, body: answer.slice(answer.indexOf("\r\n\r\n") + 4) }))
    }
    socket.on("data", (chunk) => (answer += chunk.toString("latin1")))
    socket.on("error", finish)
    socket.on("close", finish)
    socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nConnection: close\r\n\r\n`)
    return Effect.sync(() => socket.destroy())
  })

describe("GET /v1/audit/stats, hostile input", () => {
  it.scopedLive("answers every malformed option with a clear 400 (431 past the header limit), never a 500, and reads nothing", () =>
    Effect.gen(function*() {
      const hub = yield* Hub.start({ auditRoutes: AuditApi.layer })
      const w = yield* hub.workspace("w")
      const readsBefore = reads(yield* hub.events).length
      for (const [query, message] of HOSTILE) {
        const answer = yield* get(`${hub.httpUrl}/v1/audit/stats?${query}`, w.apiKey)
        expect({ query: query.slice(0, 40), status: answer.status }).toEqual({ query: query.slice(0, 40), status: 400 })
        expect(answer.body.error.code).toBe("BadRequest")
        expect(answer.body.error.message, query.slice(0, 40)).toContain(message)
        expect(answer.body.error.message.length).toBeLessThan(1_000)
      }
      // A 1 MB value: node's parser refuses the request line (431 in the API's shape, or a reset) before any handler.
      const huge = yield* rawGet(hub.port, `/v1/audit/stats?since=${"1".repeat(1_000_000)}`, w.apiKey)
      expect([0, 431]).toContain(huge.status)
      if (huge.status === 431) expect(JSON.parse(huge.body).error.code).toBe("HeadersTooLarge")
      // Nothing refused was a read; an answered one is, and the hub still answers.
      expect(reads(yield* hub.events).length).toBe(readsBefore)
      expect((yield* get(`${hub.httpUrl}/v1/audit/stats?by=day&limit=1`, w.apiKey)).status).toBe(200)
      expect(reads(yield* hub.events).length).toBe(readsBefore + 1)
    }), 120_000)
})
