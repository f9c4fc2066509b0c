/**
 * The admin API (workspaces, API keys, agent revocation) on a real hub and Postgres: an operator key manages every
 * workspace, a workspace key its own only (a 403 recorded as a refused key otherwise, a 404 for what does not
 * exist), every change recorded once with the key as actor and the caller's address, a revoked key refused at its
 * next request, and hostile input refused with a clear 400.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Admin from "../../../hub/commands/Admin.ts"
import * as Hub from "../../support/Hub.ts"

const UNKNOWN = "00000000-0000-7000-8000-0000000000ff"

describe("admin API", () => {
  it.scopedLive("an operator key creates a workspace, issues and revokes its keys, lists and revokes its agents", () =>
    Effect.gen(function*() {
      const hub = yield* Hub.start()
      const home = yield* hub.workspace("ops")
      const operator = yield* hub.run(Admin.createApiKey(home.workspaceId, "ops", "operator")).pipe(Effect.orDie)

      const created = yield* hub.http("POST", "/v1/workspaces", operator.key, { name: "acme" })
      expect(created.status).toBe(201)
      const acme = created.body as { workspaceId: string; name: string; apiKey: { apiKeyId: string; key: string; scope: string } }
      expect(acme).toMatchObject({ name: "acme", apiKey: { scope: "workspace", key: expect.stringMatching(/^pc_/) } })

      const issued = yield* hub.http("POST", `/v1/workspaces/${acme.workspaceId}/apikeys`, operator.key, { name: "ci" })
      expect(issued).toMatchObject({ status: 201, body: { workspaceId: acme.workspaceId, scope: "workspace" } })
      const ci = issued.body as { apiKeyId: string; key: string; prefix: string }

      const listed = yield* hub.http("GET", `/v1/workspaces/${acme.workspaceId}/apikeys`, operator.key)
      expect(listed.status).toBe(200)
      expect(listed.body.apiKeys.map((k: { name: string; prefix: string }) => [k.name, k.prefix])).toEqual([
        ["admin", acme.apiKey.key.slice(0, 9)],
        ["ci", ci.prefix]
      ])
      expect(JSON.stringify(listed.body)).not.toContain(ci.key)

      // The ci key works, then is revoked, and its very next request is refused.
      expect((yield* hub.http("GET", "/v1/agents", ci.key)).status).toBe(200)
      expect(yield* hub.http("POST", `/v1/apikeys/${ci.apiKeyId}/revoke`, operator.key)).toEqual({
        status: 200,
        body: { apiKeyId: ci.apiKeyId, revoked: true }
      })
      expect((yield* hub.http("GET", "/v1/agents", ci.key)).status).toBe(401)
      expect((yield* hub.http("POST", `/v1/apikeys/${ci.apiKeyId}/revoke`, operator.key)).body.revoked).toBe(false)

      // An agent of acme, listed and revoked by the operator.
      const agent = yield* hub.http("POST", "/v1/agents", acme.apiKey.key, { label: "db-host" })
      const agentId = agent.body.agentId as string
      const agents = yield* hub.http("GET", `/v1/workspaces/${acme.workspaceId}/agents`, operator.key)
      expect(agents.body.agents).toEqual([expect.objectContaining({ agentId, label: "db-host", revoked: false })])
      const revoked = yield* hub.http("POST", `/v1/agents/${agentId}/revoke`, operator.key, { reason: "laptop lost" })
      expect(revoked).toEqual({ status: 200, body: { agentId, revoked: true, released: [] } })
      expect((yield* hub.http("GET", `/v1/workspaces/${acme.workspaceId}/agents`, operator.key)).body.agents[0].revoked).toBe(true)
      // Its token is refused from now on.
      expect((yield* hub.http("GET", "/v1/services", agent.body.token)).status).toBe(401)

      // Each change once, with the operator's key as actor and the caller's address.
      const events = yield* hub.events
      const byKey = events.filter((e) => e.meta.actor.kind === "apikey" && e.meta.actor.id === operator.apiKeyId)
      expect(byKey.map((e) => e.event._tag)).toEqual([
        "WorkspaceCreated", "ApiKeyCreated", "ApiKeyCreated", "ApiKeyRevoked", "AgentTokenRevoked"
      ])
      for (const e of byKey) expect(e.meta.sourceIp).toBe("127.0.0.1")
      const revocation = byKey.at(-1)!.event as { reason?: string }
      expect(revocation.reason).toBe("laptop lost")
    }))

  it.scopedLive("a workspace key manages its own workspace only; beyond it a 403, recorded, and a 404 for the unknown", () =>
    Effect.gen(function*() {
      const hub = yield* Hub.start()
      const a = yield* hub.workspace("a")
      const b = yield* hub.workspace("b")
      const bKeys = yield* hub.run(Admin.listApiKeys(b.workspaceId)).pipe(Effect.orDie)
      const bAgent = yield* hub.http("POST", "/v1/agents", b.apiKey, { label: "b-host" })

      // Its own: issue, list, revoke an agent.
      const own = yield* hub.http("POST", `/v1/workspaces/${a.workspaceId}/apikeys`, a.apiKey, { name: "deploy" })
      expect(own.status).toBe(201)
      expect((yield* hub.http("GET", `/v1/workspaces/${a.workspaceId}/apikeys`, a.apiKey)).status).toBe(200)

      const refusals = [
        yield* hub.http("POST", "/v1/workspaces", a.apiKey, { name: "mine" }),
        yield* hub.http("POST", `/v1/workspaces/${a.workspaceId}/apikeys`, a.apiKey, { scope: "operator" }),
        yield* hub.http("GET", `/v1/workspaces/${b.workspaceId}/apikeys`, a.apiKey),
        yield* hub.http("POST", `/v1/workspaces/${b.workspaceId}/apikeys`, a.apiKey, {}),
        yield* hub.http("POST", `/v1/apikeys/${bKeys[0]!.apiKeyId}/revoke`, a.apiKey),
        yield* hub.http("GET", `/v1/workspaces/${b.workspaceId}/agents`, a.apiKey),
        yield* hub.http("POST", `/v1/agents/${bAgent.body.agentId}/revoke`, a.apiKey, {})
      ]
      for (const r of refusals) expect(r).toMatchObject({ status: 403, body: { error: { code: "Forbidden" } } })
      expect(refusals[0]!.body.error.message).toContain("operator key")
      expect(refusals[2]!.body.error.message).toContain(`its own workspace (${a.workspaceId}) only`)

      // Nothing of b changed; each refusal recorded as a refused key of a's workspace.
      expect((yield* hub.run(Admin.listApiKeys(b.workspaceId)).pipe(Effect.orDie)).map((k) => k.revokedAt)).toEqual([null])
      const events = yield* hub.events
      const refused = events.filter((e) => e.event._tag === "ApiKeyAuthFailed")
      expect(refused.length).toBeGreaterThanOrEqual(1)
      expect(refused.every((e) => (e.event as { reason: string }).reason === "wrong_scope")).toBe(true)
      expect(events.some((e) => e.event._tag === "AgentTokenRevoked")).toBe(false)

      expect(yield* hub.http("POST", `/v1/apikeys/${UNKNOWN}/revoke`, a.apiKey)).toMatchObject({
        status: 404,
        body: { error: { code: "NotFound", message: `API key ${UNKNOWN} not found` } }
      })
      expect((yield* hub.http("POST", `/v1/agents/${UNKNOWN}/revoke`, a.apiKey, {})).status).toBe(404)
    }))

  it.scopedLive("hostile input gets a clear 400 and records nothing", () =>
    Effect.gen(function*() {
      const hub = yield* Hub.start()
      const home = yield* hub.workspace("ops")
      const operator = yield* hub.run(Admin.createApiKey(home.workspaceId, "ops", "operator")).pipe(Effect.orDie)
      const before = (yield* hub.events).length
      const bad = [
        yield* hub.http("POST", "/v1/workspaces", operator.key, { name: "a\u0000b" }),
        yield* hub.http("POST", "/v1/workspaces", operator.key, { name: "x\uD800y" }),
        yield* hub.http("POST", "/v1/workspaces", operator.key, { name: "n".repeat(1_000) }),
        yield* hub.http("POST", "/v1/workspaces", operator.key, { name: "   " }),
        yield* hub.http("POST", "/v1/workspaces", operator.key, { name: "ok", extra: 1 }),
        yield* hub.http("GET", `/v1/workspaces/not-a-uuid/apikeys`, operator.key),
        yield* hub.http("POST", `/v1/agents/${"ab".repeat(40)}/revoke`, operator.key, {}),
        yield* hub.http("POST", `/v1/workspaces/${home.workspaceId}/apikeys`, operator.key, { scope: "root" })
      ]
      for (const r of bad) expect(r.status, JSON.stringify(r.body)).toBe(400)
      expect(bad[0]!.body.error.message).toContain("U+0000")
      // A megabyte where a name was expected: refused before it is read (413).
      const huge = yield* hub.http("POST", "/v1/workspaces", operator.key, { name: "n".repeat(1_000_000) })
      expect(huge.status).toBe(413)
      expect((yield* hub.events).length).toBe(before)
    }))
})
