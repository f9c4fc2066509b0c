/**
 * A workspace key cannot revoke an operator key of its own workspace (the bootstrap operator key lives in the default
 * workspace; a workspace key there revoked it and locked the operator out — found by an attacker's review).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Admin from "../../../hub/commands/Admin.ts"
import * as Hub from "../../support/Hub.ts"

describe("admin API scopes", () => {
  it.scopedLive("a workspace key revoking an operator key of its workspace: 403, recorded, and the operator key still works", () =>
    Effect.gen(function*() {
      const hub = yield* Hub.start()
      const home = yield* hub.workspace("ops")
      const operator = yield* hub.run(Admin.createApiKey(home.workspaceId, "ops", "operator")).pipe(Effect.orDie)

      const refused = yield* hub.http("POST", `/v1/apikeys/${operator.apiKeyId}/revoke`, home.apiKey)
      expect(refused).toMatchObject({ status: 403, body: { error: { code: "Forbidden" } } })
      expect(refused.body.error.message).toContain("operator key")
      expect((yield* hub.http("GET", "/v1/agents", operator.key)).status).toBe(200)

      const events = yield* hub.events
      expect(events.some((e) => e.event._tag === "ApiKeyRevoked")).toBe(false)
      const failures = events.filter((e) => e.event._tag === "ApiKeyAuthFailed")
      expect(failures.map((e) => (e.event as { reason: string }).reason)).toContain("wrong_scope")

      // An operator key may still revoke another operator key.
      const second = yield* hub.run(Admin.createApiKey(home.workspaceId, "ops-2", "operator")).pipe(Effect.orDie)
      expect((yield* hub.http("POST", `/v1/apikeys/${second.apiKeyId}/revoke`, operator.key)).status).toBe(200)
    }))
})
