/**
 * `connect hub workspace|apikey|agent` as an operator runs them, as real processes against a real database: keys
 * shown once and stored as prefix + SHA-256, listings without secrets, revocation, and clear refusals.
 */
import { PgClient } from "@effect/sql-pg"
import { SqlClient } from "@effect/sql"
import { Effect, Exit, Layer, Redacted, Scope } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { EventLog } from "../../core/EventLog.ts"
import { AgentProvisioned, EventMeta, ServiceExposed, Sha256Hex } from "../../core/Events.ts"
import { AgentId, Streams, uuidv7 } from "../../core/Ids.ts"
import { sha256Hex } from "../../core/Secrets.ts"
import { serviceIdFor } from "../../core/ServiceDecider.ts"
import * as Main from "../../hub/Main.ts"
import * as PgEventLog from "../../hub/eventlog/PgEventLog.ts"
import { killTracked, spawn } from "../support/processes.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

let scope: Scope.CloseableScope
let url: string

const query = <A extends object>(statement: string, params: ReadonlyArray<unknown> = []) =>
  Effect.runPromise(
    Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe<A>(statement, params as Array<unknown>)).pipe(
      Effect.provide(Layer.orDie(PgClient.layer({ url: Redacted.make(url) }))),
      Effect.scoped
    )
  )

beforeAll(async () => {
  scope = Effect.runSync(Scope.make())
  url = await Effect.runPromise(Scope.extend(TestDatabase.makeTestDatabaseUrl, scope))
})

afterAll(async () => {
  killTracked()
  await Effect.runPromise(Scope.close(scope, Exit.void))
})

/** Appends events as the hub would, with its inline projections. */
const append = (stream: string, events: ReadonlyArray<AgentProvisioned | ServiceExposed>, workspaceId: string) =>
  Effect.runPromise(
    Effect.flatMap(EventLog, (log) =>
      log.append(stream, events, { expectedVersion: "no_stream", workspaceId, meta: new EventMeta({ actor: { kind: "admin" } }) })).pipe(
        Effect.provide(
          PgEventLog.layer({ inline: Main.INLINE_PROJECTIONS }).pipe(Layer.provide(Layer.orDie(PgClient.layer({ url: Redacted.make(url) }))))
        ),
        Effect.scoped
      )
  )

const connect = async (...args: ReadonlyArray<string>) => {
  const p = spawn("node", ["bin/connect.js", "hub", ...args], { env: { ...process.env, DATABASE_URL: url } })
  const exit = await p.exited(60_000)
  return { code: exit.code, stdout: p.stdout(), stderr: p.stderr() }
}

describe("connect hub admin commands", () => {
  it("create a workspace and keys shown once, list and revoke them, list and revoke agents", async () => {
    const created = await connect("workspace", "create", "acme")
    expect(created.code).toBe(0)
    const workspaceId = /created workspace "acme" ([0-9a-f-]{36})/.exec(created.stdout)![1]!
    const adminKey = /^\s+(pc_[0-9A-Za-z]{40})$/m.exec(created.stdout)![1]!

    const second = await connect("apikey", "create", "--workspace", workspaceId, "--name", "ci")
    expect(second.code).toBe(0)
    expect(second.stdout).toContain("created workspace API key")
    const ciKey = /^\s+(pc_[0-9A-Za-z]{40})$/m.exec(second.stdout)![1]!

    const listed = await connect("apikey", "list", "--workspace", workspaceId, "--json")
    expect(listed.code).toBe(0)
    const keys = JSON.parse(listed.stdout) as Array<{ apiKeyId: string; name: string; prefix: string; scope: string; revokedAt: string | null }>
    expect(keys.map((k) => [k.name, k.prefix, k.scope, k.revokedAt])).toEqual([
      ["admin", adminKey.slice(0, 9), "workspace", null],
      ["ci", ciKey.slice(0, 9), "workspace", null]
    ])
    expect(listed.stdout).not.toContain(adminKey)
    // Stored as SHA-256 only: neither key appears anywhere in the database.
    const stored = await query<{ key_hash: string }>(`select key_hash from api_keys where workspace_id = $1 order by created_at`, [workspaceId])
    expect(stored.map((r) => r.key_hash)).toEqual([sha256Hex(adminKey), sha256Hex(ciKey)])
    const dump = await query<{ t: string }>(`select coalesce(string_agg(data::text || meta::text, ''), '') as t from events`)
    expect(dump[0]!.t).not.toContain(adminKey.slice(9))
    expect(dump[0]!.t).not.toContain(ciKey.slice(9))

    const revoked = await connect("apikey", "revoke", keys[1]!.apiKeyId)
    expect(revoked).toMatchObject({ code: 0, stdout: expect.stringContaining(`revoked API key ${keys[1]!.apiKeyId}`) })
    const table = await connect("apikey", "list", "--workspace", workspaceId)
    expect(table.stdout).toMatch(/^ID\s+PREFIX\s+NAME\s+SCOPE\s+CREATED\s+REVOKED$/m)
    const operator = await connect("apikey", "create", "--workspace", workspaceId, "--name", "ops", "--scope", "operator")
    expect(operator.stdout).toContain("created operator API key")
    const badScope = await connect("apikey", "create", "--workspace", workspaceId, "--scope", "root")
    expect(badScope.code).toBe(2)
    expect(table.stdout).toMatch(new RegExp(`${keys[1]!.apiKeyId}.*ci.*\\d{4}-.*\\d{4}-`))

    const missing = await connect("apikey", "create", "--workspace", "00000000-0000-7000-8000-0000000000ff")
    expect(missing.code).toBe(1)
    expect(missing.stderr).toContain("workspace 00000000-0000-7000-8000-0000000000ff not found")

    // An agent (provisioned as the HTTP API does it) is listed and revoked.
    const none = await connect("agent", "list", "--json")
    expect(JSON.parse(none.stdout)).toEqual([])
    const agentId = AgentId.make(uuidv7())
    await Effect.runPromise(
      Effect.flatMap(EventLog, (log) =>
        log.append(
          Streams.agent(agentId),
          [new AgentProvisioned({ agentId, label: "laptop", tokenHash: Sha256Hex.make(sha256Hex("t")), expiresAt: new Date("2030-01-01") })],
          { expectedVersion: "no_stream", workspaceId, meta: new EventMeta({ actor: { kind: "admin" } }) }
        )).pipe(
          Effect.provide(
            PgEventLog.layer({ inline: Main.INLINE_PROJECTIONS }).pipe(Layer.provide(Layer.orDie(PgClient.layer({ url: Redacted.make(url) }))))
          ),
          Effect.scoped
        )
    )
    const agents = await connect("agent", "list", "--json")
    expect(JSON.parse(agents.stdout)).toEqual([
      expect.objectContaining({ agentId, workspaceId, label: "laptop", online: false, revokedAt: null })
    ])
    const revokedAgent = await connect("agent", "revoke", agentId, "--reason", "stolen")
    expect(revokedAgent).toMatchObject({ code: 0, stdout: expect.stringContaining(`revoked agent ${agentId}`) })
    const after = await connect("agent", "list")
    expect(after.stdout).toMatch(new RegExp(`${agentId}\\s+${workspaceId}\\s+laptop\\s+revoked`))
    const events = await query<{ type: string; data: { reason?: string } }>(`select type, data from events where stream = $1 order by version`, [Streams.agent(agentId)])
    expect(events.map((e) => [e.type, e.data.reason ?? null])).toEqual([["AgentProvisioned", null], ["AgentTokenRevoked", "stolen"]])
    const unknown = await connect("agent", "revoke", "01900000-0000-7000-8000-000000000001")
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toContain("agent 01900000-0000-7000-8000-000000000001 not found")
  }, 180_000)

  it("set an agent's allow list and release a service name, both recorded as events", async () => {
    const created = await connect("workspace", "create", "names")
    const workspaceId = /created workspace "names" ([0-9a-f-]{36})/.exec(created.stdout)![1]!
    const agentId = AgentId.make(uuidv7())
    await append(Streams.agent(agentId), [
      new AgentProvisioned({ agentId, label: "db-host", tokenHash: Sha256Hex.make(sha256Hex("u")), expiresAt: new Date("2030-01-01") })
    ], workspaceId)

    const allowed = await connect("agent", "allow", agentId, "--allow", "10.0.0.0/8,db.internal")
    expect(allowed).toMatchObject({ code: 0, stdout: expect.stringContaining(`agent ${agentId} may expose 10.0.0.0/8,db.internal`) })
    const listed = JSON.parse((await connect("agent", "list", "--json")).stdout) as Array<{ agentId: string; exposeAllow: unknown }>
    expect(listed.find((a) => a.agentId === agentId)!.exposeAllow).toEqual(["10.0.0.0/8", "db.internal"])
    const malformed = await connect("agent", "allow", agentId, "--allow", "10.0.0.0/33")
    expect(malformed).toMatchObject({ code: 1, stderr: expect.stringContaining("10.0.0.0/33") })
    expect((await connect("agent", "allow", agentId)).code).not.toBe(0)
    expect((await connect("agent", "allow", agentId, "--any")).stdout).toContain("anything but cloud metadata addresses")

    const serviceId = serviceIdFor(workspaceId, "secretdb")
    await append(Streams.service(serviceId), [
      new ServiceExposed({ serviceId, agentId, name: "secretdb", targetHost: "127.0.0.1", targetPort: 5432 })
    ], workspaceId)
    const released = await connect("service", "release", "secretdb", "--workspace", workspaceId)
    expect(released).toMatchObject({ code: 0, stdout: expect.stringContaining(`released service secretdb from agent ${agentId}`) })
    const again = await connect("service", "release", "secretdb", "--workspace", workspaceId)
    expect(again).toMatchObject({ code: 1, stderr: expect.stringContaining("service secretdb is not exposed") })
    const events = await query<{ type: string; meta: { actor: { kind: string } } }>(
      `select type, meta from events where stream in ($1, $2) order by position`,
      [Streams.agent(agentId), Streams.service(serviceId)]
    )
    expect(events.map((e) => [e.type, e.meta.actor.kind])).toEqual([
      ["AgentProvisioned", "admin"],
      ["AgentAllowListSet", "admin"],
      ["AgentAllowListSet", "admin"],
      ["ServiceExposed", "admin"],
      ["ServiceReleased", "admin"]
    ])
  }, 180_000)
})
