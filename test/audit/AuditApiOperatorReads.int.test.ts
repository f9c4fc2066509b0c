/**
 * An operator key's reads are about every workspace: their `AuditRead` (its filters name other workspaces' ids, agent
 * labels, service names, addresses) must not land where a workspace key can read it. A workspace key of the operator
 * key's own workspace sees none of it; the operator does.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as AuditApi from "../../audit/AuditApi.ts"
import * as Admin from "../../hub/commands/Admin.ts"
import { DEFAULT_WORKSPACE_ID } from "../../hub/commands/Bootstrap.ts"
import * as Database from "../../hub/db/Database.ts"
import * as Migrations from "../../hub/db/Migrations.ts"
import * as Hub from "../support/Hub.ts"
import * as TestDatabase from "../support/TestDatabase.ts"
import { writerRoleUrl } from "../support/WriterAttack.ts"

const events = (hub: Hub.TestHub, key: string, params: Record<string, string>) =>
  hub.http("GET", `/v1/audit/events?${new URLSearchParams(params).toString()}`, key)

describe("GET /v1/audit/events: the operator's own reads", () => {
  it.scopedLive("are not readable by a workspace key of the operator key's workspace", () =>
    Effect.gen(function*() {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      yield* Effect.provide(Migrations.run, PgClient.layer(Database.pgClientConfig(url))).pipe(Effect.orDie)
      const hub = yield* Hub.start({ databaseUrl: yield* writerRoleUrl(url), auditRoutes: AuditApi.layer })
      const a = yield* hub.workspace("a")
      const operator = (yield* hub.run(Admin.createApiKey(DEFAULT_WORKSPACE_ID, "ops", "operator")).pipe(Effect.orDie)).key
      // A workspace key of the default workspace (`apikey create` gives workspace keys by default).
      const intern = (yield* hub.run(Admin.createApiKey(DEFAULT_WORKSPACE_ID, "intern", "workspace")).pipe(Effect.orDie)).key

      // The operator investigates workspace A.
      const asked = { workspace: a.workspaceId, service: "a-secret-billing-db", ip: "198.51.100.7" }
      expect((yield* events(hub, operator, asked)).status).toBe(200)

      const seen = (yield* events(hub, intern, { limit: "1000" })).body.events as ReadonlyArray<unknown>
      const text = JSON.stringify(seen)
      expect(text).not.toContain(a.workspaceId)
      expect(text).not.toContain("a-secret-billing-db")
      expect(text).not.toContain("198.51.100.7")
      // The operator's read is recorded, where the operator reads it.
      const reads = (yield* events(hub, operator, { type: "AuditRead", limit: "1000" })).body.events as ReadonlyArray<
        { data: { filters: Record<string, string> } }
      >
      expect(reads.some((r) => r.data.filters.service === "a-secret-billing-db")).toBe(true)
    }), 120_000)
})
