/**
 * The live tail's bounds on a real hub, as two tenants meet them: one workspace's keys opening tails until refused
 * lock out neither another workspace nor the operator, and each refusal is on the record as a refused key is.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as AuditApi from "../../audit/AuditApi.ts"
import * as Tails from "../../audit/Tails.ts"
import * as Admin from "../../hub/commands/Admin.ts"
import { DEFAULT_WORKSPACE_ID } from "../../hub/commands/Bootstrap.ts"
import * as Hub from "../support/Hub.ts"

describe("live tails of two workspaces", () => {
  it.scopedLive("one workspace's keys hold at most PER_WORKSPACE tails; the other workspace and the operator still open theirs", () =>
    Effect.gen(function*() {
      const hub = yield* Hub.start({ auditRoutes: AuditApi.layer })
      const a = yield* hub.workspace("a")
      const b = yield* hub.workspace("b")
      const operator = (yield* hub.run(Admin.createApiKey(DEFAULT_WORKSPACE_ID, "ops", "operator")).pipe(Effect.orDie)).key
      // Enough keys of workspace a for PER_WORKSPACE tails and more, each within its own PER_KEY.
      const keys = [a.apiKey]
      for (let i = 1; i * Tails.PER_KEY <= Tails.PER_WORKSPACE; i++) {
        keys.push((yield* hub.run(Admin.createApiKey(a.workspaceId, `tails-${i}`)).pipe(Effect.orDie)).key)
      }
      const statuses: Array<number> = []
      for (const key of keys) {
        for (let i = 0; i < Tails.PER_KEY; i++) {
          statuses.push((yield* hub.http("GET", "/v1/audit/tail?wait=0", key)).status)
        }
      }
      expect(statuses.filter((s) => s === 200).length).toBe(Tails.PER_WORKSPACE)
      expect(statuses.slice(Tails.PER_WORKSPACE).every((s) => s === 429)).toBe(true)
      const refused = yield* hub.http("GET", "/v1/audit/tail?wait=0", keys.at(-1)!)
      expect(refused).toMatchObject({ status: 429, body: { error: { code: "TooManyRequests" } } })
      expect(refused.body.error.message).toContain("this workspace's API keys have too many live tails")

      // The other tenant and the operator are not locked out.
      expect((yield* hub.http("GET", "/v1/audit/tail?wait=0", b.apiKey)).status).toBe(200)
      expect((yield* hub.http("GET", "/v1/audit/tail?wait=0", operator)).status).toBe(200)

      // Refusals are on the record as refused API keys are: rate_limited, coalesced (written when the window ends).
      const deadline = Date.now() + 30_000
      let limited: Array<{ reason: string; count?: number }> = []
      while (Date.now() < deadline) {
        limited = (yield* hub.events)
          .filter((e) => e.type === "ApiKeyAuthFailed")
          .map((e) => e.event as unknown as { reason: string; count?: number })
          .filter((e) => e.reason === "rate_limited")
        if (limited.reduce((n, e) => n + (e.count ?? 1), 0) >= statuses.length - Tails.PER_WORKSPACE + 1) break
        yield* Effect.sleep("500 millis")
      }
      expect(limited.reduce((n, e) => n + (e.count ?? 1), 0)).toBe(statuses.length - Tails.PER_WORKSPACE + 1)
    }), 120_000)
})
