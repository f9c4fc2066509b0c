/**
 * Refused console sign-ins in the stats rollups: a coalesced `ConsoleSignInFailed` stands for `count` refusals, as a
 * coalesced `ApiKeyAuthFailed` does — a stranger's 10,000 wrong keys are a few events on the log and 10,000 refusals
 * in `connect audit --stats` (and the console's Stats page), not a handful.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as StatsProjection from "../../../audit/StatsProjection.ts"
import { EventLog } from "../../../core/EventLog.ts"
import * as E from "../../../core/Events.ts"
import { uuidv7, WorkspaceId } from "../../../core/Ids.ts"
import * as MemoryEventLog from "../../../core/MemoryEventLog.ts"

const meta = new E.EventMeta({ actor: { kind: "public" }, sourceIp: "203.0.113.7" })

describe("stats rollup of refused console sign-ins", () => {
  it.effect("counts a coalesced window as the refusals it stands for, like ApiKeyAuthFailed", () =>
    Effect.gen(function*() {
      const log = yield* EventLog
      const at = new Date()
      const failed = (count?: number) =>
        new E.ConsoleSignInFailed({
          reason: "unknown_api_key",
          ip: "203.0.113.7",
          ...(count === undefined ? {} : { count, firstAt: at, lastAt: at })
        })
      yield* log.append("console-signin", [failed(), failed(), failed(9_998)], {
        expectedVersion: "any",
        workspaceId: null,
        meta
      })
      yield* log.append("console-signin", [failed()], {
        expectedVersion: "any",
        workspaceId: WorkspaceId.make(uuidv7()),
        meta
      })
      const rollup = StatsProjection.rollup(yield* log.readAll(0, 10))
      const signIns = rollup.hourly.filter((r) => r.type === "ConsoleSignInFailed")
      expect(signIns.reduce((n, r) => n + r.events, 0)).toBe(4)
      expect(signIns.every((r) => r.outcome === "denied" && r.reason === "unknown_api_key")).toBe(true)
      expect(signIns.reduce((n, r) => n + r.count, 0)).toBe(10_001)
      expect(rollup.ips.reduce((n, r) => n + r.count, 0)).toBe(10_001)
    }).pipe(Effect.provide(MemoryEventLog.layer)))
})
