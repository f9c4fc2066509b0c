import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Tails from "../../audit/Tails.ts"
import * as MemoryEventLog from "../../core/MemoryEventLog.ts"

const resolved = { agentIds: [], serviceIds: [] }

/** `n` tails for `owner`: what each open answered (a tail, or the bound it broke). */
const openMany = (tails: Tails.Tails, owner: Tails.Owner, n: number) =>
  Effect.forEach(Array.from({ length: n }), () =>
    Effect.map(tails.open(owner, { limit: 10 }, resolved), (t) => (typeof t === "string" ? t : "open")))

const key = (workspaceId: string, n: number, scope: "workspace" | "operator" = "workspace"): Tails.Owner => ({
  apiKeyId: `${workspaceId}-key-${n}`,
  workspaceId,
  scope
})

describe("live tails' bounds", () => {
  it.scoped("one workspace's keys fill their own share, not the hub: another workspace and the operator still open", () =>
    Effect.gen(function*() {
      const tails = yield* Tails.make({ perKey: 2, perWorkspace: 5, total: 12, operatorReserve: 2 })
      // Workspace a: three keys, two tails each; the sixth is past the workspace's 5.
      const a = [...yield* openMany(tails, key("a", 1), 2), ...yield* openMany(tails, key("a", 2), 2), ...yield* openMany(tails, key("a", 3), 2)]
      expect(a).toEqual(["open", "open", "open", "open", "open", "workspace_full"])
      expect(yield* openMany(tails, key("a", 4), 1)).toEqual(["workspace_full"])
      // Workspace b is not held back by a's tails.
      expect([...yield* openMany(tails, key("b", 1), 2), ...yield* openMany(tails, key("b", 2), 2)]).toEqual(["open", "open", "open", "open"])
      // 9 open; workspace keys may take up to 10 (12 less the operator's 2): c gets one, then the hub is full for them.
      expect(yield* openMany(tails, key("c", 1), 2)).toEqual(["open", "hub_full"])
      // An operator key (of workspace a, as the bootstrap key is of the default one) still opens, into the reserve.
      expect(yield* openMany(tails, key("a", 9, "operator"), 2)).toEqual(["open", "open"])
      expect(yield* openMany(tails, key("a", 8, "operator"), 1)).toEqual(["hub_full"])
      expect(yield* tails.size).toBe(12)
    }).pipe(Effect.provide(MemoryEventLog.layer)))

  it.scoped("the defaults: a workspace's keys 100 together, room kept for the operator", () =>
    Effect.gen(function*() {
      expect([Tails.PER_KEY, Tails.PER_WORKSPACE, Tails.TOTAL]).toEqual([8, 100, 1_000])
      const tails = yield* Tails.make()
      const opened = yield* Effect.forEach(Array.from({ length: 13 }, (_, i) => i), (i) => openMany(tails, key("a", i), 8))
      expect(opened.flat().filter((r) => r === "open").length).toBe(100)
      expect(opened.flat().filter((r) => r === "workspace_full").length).toBe(4)
      // Ten workspaces fill the hub but for the operator's reserve.
      for (let w = 0; w < 9; w++) {
        yield* Effect.forEach(Array.from({ length: 13 }, (_, i) => i), (i) => openMany(tails, key(`w${w}`, i), 8))
      }
      expect(yield* tails.size).toBe(Tails.TOTAL - Tails.OPERATOR_RESERVE)
      expect(yield* openMany(tails, key("x", 1), 1)).toEqual(["hub_full"])
      expect(yield* openMany(tails, key("a", 99, "operator"), 1)).toEqual(["open"])
    }).pipe(Effect.provide(MemoryEventLog.layer)))
})
