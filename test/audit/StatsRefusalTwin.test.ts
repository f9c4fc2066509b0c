/**
 * A refusal recorded twice — `not_found` in the reacher's workspace and its `cross_workspace` detail at hub level for
 * the operator — is one refusal in the rollups; a `cross_workspace` recorded in a workspace (by a hub before the
 * detail moved) is still counted, being the only record of its refusal.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as StatsProjection from "../../audit/StatsProjection.ts"
import { EventLog } from "../../core/EventLog.ts"
import * as E from "../../core/Events.ts"
import { AgentId, uuidv7, WorkspaceId } from "../../core/Ids.ts"
import * as MemoryEventLog from "../../core/MemoryEventLog.ts"

const workspace = WorkspaceId.make(uuidv7())
const agentId = AgentId.make(uuidv7())
const meta = new E.EventMeta({ actor: { kind: "agent", id: agentId } })
const denied = (reason: "not_found" | "cross_workspace") => new E.ReachDenied({ requestedName: "prod-db", fromAgentId: agentId, reason })

const refusals = (rows: ReadonlyArray<StatsProjection.HourlyRow>) =>
  rows.filter((r) => r.outcome === "denied").reduce((n, r) => n + r.count, 0)

describe("stats rollup of a refusal and its operator detail", () => {
  it.effect("counts the hub-level cross_workspace twin as an event, not as a second refusal", () =>
    Effect.gen(function* () {
      const log = yield* EventLog
      yield* log.append(`agent-${agentId}`, [denied("not_found")], { expectedVersion: "any", workspaceId: workspace, meta })
      yield* log.append("reach-cross-workspace", [denied("cross_workspace")], { expectedVersion: "any", workspaceId: null, meta })
      const rollup = StatsProjection.rollup(yield* log.readAll(0, 10))
      expect(rollup.hourly.reduce((n, r) => n + r.events, 0)).toBe(2)
      expect(refusals(rollup.hourly)).toBe(1)
    }).pipe(Effect.provide(MemoryEventLog.layer)))

  it.effect("still counts a cross_workspace recorded in a workspace, by a hub from before the detail moved", () =>
    Effect.gen(function* () {
      const log = yield* EventLog
      yield* log.append(`agent-${agentId}`, [denied("cross_workspace")], { expectedVersion: "any", workspaceId: workspace, meta })
      expect(refusals(StatsProjection.rollup(yield* log.readAll(0, 10)).hourly)).toBe(1)
    }).pipe(Effect.provide(MemoryEventLog.layer)))
})
