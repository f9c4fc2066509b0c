import * as Crypto from "node:crypto"
import * as Net from "node:net"
import * as HttpApi from "@effect/platform/HttpApi"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as HubApi from "../../../core/HubApi.ts"
import { isRecordable } from "../../../core/Text.ts"
import * as Admin from "../../../hub/commands/Admin.ts"
import { DEFAULT_WORKSPACE_ID } from "../../../hub/commands/Bootstrap.ts"
import * as Hub from "../../support/Hub.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"

const unauthorized = (message: string) => ({ status: 401, body: { error: { code: "Unauthorized", message } } })

describe("agent API", () => {
  it.scopedLive("answers bad credentials and bad requests with clear JSON errors, and provisions within the key's workspace", () =>
    Effect.gen(function*() {
      const hub = yield* Hub.start()
      const w1 = yield* hub.workspace("one")
      const w2 = yield* hub.workspace("two")

      expect(yield* hub.http("POST", "/v1/agents", undefined, {})).toEqual({
        status: 401,
        body: { error: { code: "Unauthorized", message: "missing Authorization: Bearer <API key or agent token>" } }
      })
      expect(yield* hub.http("POST", "/v1/agents", `pc_${"x".repeat(40)}`, {})).toEqual(unauthorized("unknown API key"))
      expect(yield* hub.http("POST", "/v1/agents", w1.apiKey, "{not json")).toMatchObject({
        status: 400,
        body: { error: { code: "BadRequest" } }
      })
      expect(yield* hub.http("POST", "/v1/agents", w1.apiKey, { label: 42 })).toMatchObject({
        status: 400,
        body: { error: { code: "BadRequest" } }
      })
      expect(yield* hub.http("GET", "/v1/nothing-here", w1.apiKey)).toEqual({
        status: 404,
        body: { error: { code: "NotFound", message: "no such endpoint" } }
      })
      // The first key of the hub's default workspace lives in the workspace's own stream; it revokes all the same.
      const bootstrapKeys = yield* hub.run(Admin.listApiKeys(DEFAULT_WORKSPACE_ID))
      expect(bootstrapKeys.map((k) => k.name)).toEqual(["bootstrap admin"])
      expect(yield* hub.run(Admin.revokeApiKey(bootstrapKeys[0]!.apiKeyId))).toEqual({ revoked: true })
      expect(yield* hub.run(Admin.revokeApiKey(bootstrapKeys[0]!.apiKeyId))).toEqual({ revoked: false })
      expect((yield* hub.run(Admin.listApiKeys(DEFAULT_WORKSPACE_ID)))[0]!.revokedAt).not.toBeNull()

      const created = yield* hub.http("POST", "/v1/agents", w1.apiKey, { label: "laptop" })
      expect(created.status).toBe(201)
      expect(created.body).toEqual({
        agentId: expect.any(String),
        workspaceId: w1.workspaceId,
        token: expect.stringMatching(/^[0-9a-f]{64}$/),
        expiresAt: expect.any(String)
      })
      const days = (Date.parse(created.body.expiresAt) - Date.now()) / 86_400_000
      expect(days).toBeGreaterThan(29.9)
      expect(days).toBeLessThanOrEqual(30)
      const unlabeled = yield* hub.http("POST", "/v1/agents", w1.apiKey)
      expect(unlabeled.status).toBe(201)

      // An agent token is not an API key.
      expect(yield* hub.http("POST", "/v1/agents", created.body.token, {})).toMatchObject({
        status: 403,
        body: { error: { code: "Forbidden" } }
      })
      expect((yield* hub.http("GET", "/v1/agents", created.body.token)).status).toBe(403)

      const list1 = yield* hub.http("GET", "/v1/agents", w1.apiKey)
      expect(list1.body.agents.map((a: any) => [a.label, a.online, a.revoked])).toEqual([["laptop", false, false], ["agent", false, false]])
      expect((yield* hub.http("GET", "/v1/agents", w2.apiKey)).body).toEqual({ agents: [] })

      // A revoked key is refused; the key itself was never stored.
      const keys = yield* hub.run(Admin.listApiKeys(w1.workspaceId))
      expect(keys).toHaveLength(1)
      expect(w1.apiKey.startsWith(keys[0]!.prefix)).toBe(true)
      expect(JSON.stringify(keys)).not.toContain(w1.apiKey)
      yield* hub.run(Admin.revokeApiKey(keys[0]!.apiKeyId))
      expect(yield* hub.http("GET", "/v1/services", w1.apiKey)).toEqual(unauthorized("API key revoked"))
      expect((yield* hub.run(Admin.listApiKeys(w1.workspaceId)))[0]!.revokedAt).not.toBeNull()
      // Other workspaces are unaffected.
      expect((yield* hub.http("GET", "/v1/services", w2.apiKey)).status).toBe(200)

      // A garbage agent token is refused and audited without recording it.
      expect(yield* hub.http("GET", "/v1/services", "not-a-token")).toEqual(unauthorized("unknown agent token"))
      const failures = (yield* hub.events).filter((e) => e.event._tag === "AgentAuthFailed")
      expect(failures.map((e) => e.event)).toEqual([expect.objectContaining({ reason: "unknown_token", ip: "127.0.0.1" })])
      expect(JSON.stringify(failures[0]!.event)).not.toContain("not-a-token")
    }), 60_000)

  it.scopedLive("serves every endpoint the API declares behind its bearer check; another method of its path is a 405 naming the declared ones", () =>
    Effect.gen(function*() {
      const hub = yield* Hub.start()
      const declared: Array<{ readonly method: string; readonly path: string }> = []
      HttpApi.reflect(HubApi.HubApi, {
        onGroup: () => {},
        onEndpoint: ({ endpoint }) => declared.push({ method: endpoint.method, path: endpoint.path })
      })
      expect(declared.map((e) => `${e.method} ${e.path}`).sort()).toEqual(
        [
          "GET /v1/agents",
          "GET /v1/audit/access",
          "GET /v1/audit/events",
          "GET /v1/audit/integrity",
          "GET /v1/audit/stats",
          "GET /v1/audit/tail",
          "GET /v1/links",
          "GET /v1/services",
          "GET /v1/shares",
          "GET /v1/workspaces/:workspaceId/agents",
          "GET /v1/workspaces/:workspaceId/apikeys",
          "GET /v1/workspaces/:workspaceId/services",
          "POST /v1/agents",
          "POST /v1/agents/:agentId/revoke",
          "POST /v1/agents/rotate",
          "POST /v1/apikeys/:apiKeyId/revoke",
          "POST /v1/links",
          "POST /v1/links/:linkId/revoke",
          "POST /v1/shares",
          "POST /v1/shares/:shareId/revoke",
          "POST /v1/shares/join",
          "POST /v1/workspaces",
          "POST /v1/workspaces/:workspaceId/apikeys"
        ]
      )
      for (const { method, path } of declared) {
        // A path parameter filled with a well-formed id, so that the route is the one reached.
        const concrete = path.replace(/:\w+/g, "00000000-0000-7000-8000-000000000001")
        // Reached its handler's authentication: not shadowed by another route, not answered 404.
        expect(yield* hub.http(method, concrete)).toEqual(unauthorized("missing Authorization: Bearer <API key or agent token>"))
        const methods = declared.filter((e) => e.path === path).map((e) => e.method).sort()
        const other = yield* Effect.promise(() => fetch(`${hub.httpUrl}${concrete}`, { method: "PATCH" }))
        expect(other.status).toBe(405)
        expect(other.headers.get("allow")).toBe(methods.join(", "))
        expect(yield* Effect.promise(() => other.json())).toMatchObject({ error: { code: "MethodNotAllowed" } })
      }
    }), 60_000)

  it.scopedLive("300 bad API keys from one address are refused, recorded aggregated, and grow the log by kilobytes", () =>
    Effect.gen(function*() {
      // The hub runs in its own scope: closing it flushes the open windows, read here from the database it leaves.
      const databaseUrl = yield* TestDatabase.makeTestDatabaseUrl
      const { before, statuses } = yield* Effect.scoped(Effect.gen(function*() {
        const hub = yield* Hub.start({ databaseUrl })
        const before = yield* query(databaseUrl, sizesSql)
        const statuses = new Map<number, number>()
        for (let n = 0; n < 300; n++) {
          // 8 KB keys of random characters (under the header limit; Postgres cannot compress them away).
          const key = `pc_${Crypto.randomBytes(6_000).toString("base64").replace(/[^A-Za-z0-9]/g, "x")}`
          const { status } = yield* hub.http("GET", "/v1/agents", key)
          statuses.set(status, (statuses.get(status) ?? 0) + 1)
        }
        return { before: before[0]!, statuses }
      }))
      const after = (yield* query(databaseUrl, sizesSql))[0]!
      const failures = yield* query(databaseUrl, `select data, meta from events where type = 'ApiKeyAuthFailed'`)
      const counted = failures.reduce((sum, row) => sum + (row.data.count ?? 1), 0)
      console.log(
        `300 bad API keys: events +${after.rel - before.rel} B, database +${after.db - before.db} B, ` +
          `${failures.length} events, statuses ${JSON.stringify([...statuses])}`
      )
      expect(counted).toBe(300)
      expect(failures.length).toBeLessThan(20)
      expect(failures.every((row) => row.data.ip === "127.0.0.1")).toBe(true)
      expect([...statuses.keys()].sort()).toEqual([401, 429])
      expect(after.rel - before.rel).toBeLessThan(512 * 1024)
      expect(after.db - before.db).toBeLessThan(1024 * 1024)
    }), 120_000)

  for (const [name, text] of Object.entries(hostileHeader)) {
    it.scopedLive(`refuses and records a bad API key with ${name} in its key and user agent`, () =>
      Effect.gen(function*() {
        const hub = yield* Hub.start()
        const status = yield* rawRequest(hub.port, `pc_${text}`, text)
        const failures = (yield* hub.events).filter((e) => e.event._tag === "ApiKeyAuthFailed")
        if (status === 401) {
          // Whatever reached the hub is recorded, recordable.
          expect(failures).toHaveLength(1)
          expect(failures[0]!.event).toMatchObject({ reason: "unknown_api_key", ip: "127.0.0.1" })
          expect(isRecordable(failures[0]!.meta.userAgent ?? "")).toBe(true)
          expect(Array.from(failures[0]!.meta.userAgent ?? "").length).toBeLessThanOrEqual(128)
        } else {
          // Node's HTTP parser refused the request (400 bad header bytes, 431 too large, or a reset while the client was
          // still sending): no credential reached the hub.
          expect([0, 400, 431]).toContain(status)
          expect(failures).toHaveLength(0)
        }
        // The hub is still there.
        expect((yield* hub.http("GET", "/v1/agents", `pc_${"y".repeat(40)}`)).status).toBe(401)
      }), 60_000)
  }
})

const sizesSql = `select pg_total_relation_size('events')::float8 as rel, pg_database_size(current_database())::float8 as db`

const query = (url: string, statement: string) => Effect.promise(() => TestDatabase.queryOnce(url, statement))

/** Hostile strings as they can reach a header: sent as their UTF-8 bytes (a lone surrogate becomes EF BF BD). */
const hostileHeader: Record<string, string> = {
  nul: "a\u0000b",
  loneHigh: "a\uD800b",
  loneLow: "a\uDC00b",
  megabyte: "x".repeat(1 << 20),
  splitAtCap: "a".repeat(127) + "😀".repeat(8),
  latin1: "caf\u00e9\u00ff\u0080"
}

/** A GET /v1/agents with these raw header values; resolves the response status. */
const rawRequest = (port: number, key: string, userAgent: string) =>
  Effect.async<number>((resume) => {
    const socket = Net.connect(port, "127.0.0.1")
    let head = ""
    let done = false
    const finish = (status: number) => {
      if (done) return
      done = true
      socket.destroy()
      resume(Effect.succeed(status))
    }
    socket.on("data", (chunk) => {
      head += chunk.toString("latin1")
      const match = /^HTTP\/1\.1 (\d{3})/.exec(head)
      if (match) finish(Number(match[1]))
    })
    // A server that answers early and closes may reset the connection before its answer is read.
    socket.on("error", () => finish(0))
    socket.on("close", () => finish(0))
    socket.write(
      Buffer.concat([
        Buffer.from("GET /v1/agents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "),
        Buffer.from(key, "utf8"),
        Buffer.from("\r\nUser-Agent: "),
        Buffer.from(userAgent, "utf8"),
        Buffer.from("\r\nConnection: close\r\n\r\n")
      ])
    )
    return Effect.sync(() => socket.destroy())
  })
