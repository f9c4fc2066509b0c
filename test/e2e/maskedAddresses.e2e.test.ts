/**
 * `connect hub agent list` shows an agent's last address masked (/24, /48), in the table and in --json alike, and in
 * full only with --reveal-ips; the event log keeps it whole.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Effect, Exit, Layer, Scope } from "effect"
import { EventLog } from "../../core/EventLog.ts"
import * as E from "../../core/Events.ts"
import { AgentId, Streams } from "../../core/Ids.ts"
import * as Admin from "../../hub/commands/Admin.ts"
import * as Database from "../../hub/db/Database.ts"
import * as Migrations from "../../hub/db/Migrations.ts"
import * as PgEventLog from "../../hub/eventlog/PgEventLog.ts"
import * as Main from "../../hub/Main.ts"
import * as HubLog from "../support/HubLog.ts"
import { killTracked, spawn } from "../support/processes.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

let scope: Scope.CloseableScope
let url: string
const agents: Array<{ agentId: string; ip: string }> = []

beforeAll(async () => {
  scope = Effect.runSync(Scope.make())
  url = await Effect.runPromise(Scope.extend(TestDatabase.makeTestDatabaseUrl, scope))
  await Effect.runPromise(
    Effect.gen(function*() {
      yield* Migrations.run
      const { workspaceId } = yield* Admin.createWorkspace("w")
      const log = yield* EventLog
      for (const [label, ip] of [["v4", "203.0.113.77"], ["v6", "2001:db8:85a3:1234::9"]] as const) {
        const { agentId } = yield* HubLog.provisionAgent(workspaceId, label)
        yield* log.append(Streams.agent(AgentId.make(agentId)), [
          new E.AgentConnected({ agentId: AgentId.make(agentId), ip, userAgent: "t", transport: "ws" })
        ], { expectedVersion: "any", workspaceId, meta: new E.EventMeta({ actor: { kind: "agent", id: agentId }, sourceIp: ip }) })
        agents.push({ agentId, ip })
      }
    }).pipe(
      Effect.provide(PgEventLog.layer({ inline: Main.INLINE_PROJECTIONS }).pipe(Layer.provideMerge(PgClient.layer(Database.pgClientConfig(url))))),
      Effect.scoped
    )
  )
}, 120_000)

afterAll(async () => {
  killTracked()
  await Effect.runPromise(Scope.close(scope, Exit.void))
})

const list = async (...args: Array<string>) => {
  const cli = spawn(process.execPath, ["bin/connect.js", "hub", "agent", "list", ...args], { env: { ...process.env, DATABASE_URL: url } })
  expect((await cli.exited(120_000)).code).toBe(0)
  return cli.stdout()
}

describe("connect hub agent list masks addresses", () => {
  it("shows 203.0.113.x and the /48 unless --reveal-ips, in the table and --json", async () => {
    // One at a time: each process's start is most of its time on a loaded machine.
    const table = await list()
    const json = await list("--json")
    const revealed = await list("--reveal-ips")
    const revealedJson = await list("--json", "--reveal-ips")
    expect(table).toMatch(/\sv4\s+\S+\s+203\.0\.113\.x\s/)
    expect(table).toMatch(/\sv6\s+\S+\s+2001:db8:85a3::\/48\s/)
    for (const text of [table, json]) {
      expect(text).not.toContain("203.0.113.77")
      expect(text).not.toContain("1234::9")
    }
    const byId = (text: string) => new Map((JSON.parse(text) as Array<{ agentId: string; lastIp: string }>).map((a) => [a.agentId, a.lastIp]))
    expect(byId(json).get(agents[0]!.agentId)).toBe("203.0.113.x")
    expect(byId(revealedJson).get(agents[1]!.agentId)).toBe("2001:db8:85a3:1234::9")
    expect(revealed).toContain("203.0.113.77")
  }, 500_000)
})
