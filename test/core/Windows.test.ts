/**
 * Coalescing windows hand work to the background (`fork`): a record of something that already happened. Work handed
 * over after the scope closed (a link exchange cut by the stop reports itself a tick later) must still run, not be
 * interrupted unstarted by the closed fiber set.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import * as Windows from "../../core/Windows.ts"

describe("Windows", () => {
  it.live("work handed over after the close still runs", () =>
    Effect.gen(function*() {
      const written: Array<string> = []
      const scope = yield* Scope.make()
      const windows = yield* Windows.make<{ startedAt: number; key: string }>({
        windowMs: 10_000,
        now: Date.now,
        write: (w) => Effect.sync(() => void written.push(`window ${w.key}`))
      }).pipe(Scope.extend(scope))
      windows.at("a", (t) => ({ startedAt: t, key: "a" }))
      windows.fork(Effect.sync(() => void written.push("before close")))
      yield* Scope.close(scope, Exit.void)
      // The open window and the work handed over before the close are done by the close.
      expect(written).toEqual(["before close", "window a"])
      windows.fork(Effect.sync(() => void written.push("after close")))
      yield* Effect.sleep("50 millis")
      expect(written).toEqual(["before close", "window a", "after close"])
    }))
})
