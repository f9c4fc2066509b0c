/**
 * A coalesced offline read (an `AuditRead` with `runs`, audit/PgReadWindows.ts) counts in the stats rollups as the
 * reads it stands for, not as one; its `count` (the events the read returned) is not occurrences.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as StatsProjection from "../../audit/StatsProjection.ts"
import { EventLog } from "../../core/EventLog.ts"
import * as E from "../../core/Events.ts"
import * as MemoryEventLog from "../../core/MemoryEventLog.ts"

const meta = new E.EventMeta({ actor: { kind: "admin" } })
const read = (runs?: number) =>
  new E.AuditRead({
    kind: "verify",
    filters: { independent: "false" },
    count: 500,
    verified: "intact",
    ...(runs === undefined ? {} : { runs, firstAt: new Date(Date.now() - 60_000), lastAt: new Date() })
  })

describe("stats rollup of coalesced reads", () => {
  it.effect("counts an AuditRead as its runs (absent: one)", () =>
    Effect.gen(function*() {
      const log = yield* EventLog
      yield* log.append("auditread-1", [read()], { expectedVersion: "any", workspaceId: null, meta })
      yield* log.append("auditread-2", [read(59)], { expectedVersion: "any", workspaceId: null, meta })
      const rows = StatsProjection.rollup(yield* log.readAll(0, 10)).hourly.filter((r) => r.type === "AuditRead")
      expect(rows.reduce((n, r) => n + r.events, 0)).toBe(2)
      expect(rows.reduce((n, r) => n + r.count, 0)).toBe(60)
    }).pipe(Effect.provide(MemoryEventLog.layer)))
})
