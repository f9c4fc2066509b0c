import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Admin from "../../hub/Admin.ts"
import { DEFAULT_WORKSPACE_ID } from "../../hub/Bootstrap.ts"
import * as Hub from "../support/Hub.ts"

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
})
