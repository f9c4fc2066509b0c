/**
 * An event's `recorded_at` never runs backwards along the chain, whichever hub and path stamp it: the fast path stamps
 * the database's clock as the writer estimates it (checked by `connect_append` within 1 s, and never before the
 * head's), the slow path the database's clock, never before the head's, and the chain check refuses a row recorded
 * before its predecessor. Failed when the fast path stamped the hub's own clock within 60 s.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as TestDatabase from "../../support/TestDatabase.ts"
import { append, logOn, opts, rows, session } from "../../support/WriterAttack.ts"

/** Runs the scope with this process's clock (Date.now, which the writer reads) `ms` ahead; restored after. */
const clockAhead = (ms: number) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const real = Date.now
      Date.now = () => real() + ms
      return real
    }),
    (real) => Effect.sync(() => void (Date.now = real))
  )

describe("recorded_at along the chain", () => {
  it.scopedLive("never runs backwards, whichever writer or path stamps it", () =>
    Effect.gen(function* () {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      const a = yield* Layer.build(logOn(url))
      const b = yield* Layer.build(logOn(url))
      // The hub's clock 50 s ahead: within connect_append's tolerance of 60 s, so never refused as CN004.
      yield* clockAhead(50_000)
      yield* append(a, "a", "a1", opts("any")) // a's first: slow path, the database's time
      yield* append(a, "a", "a2", opts("any")) // fast path: a's clock, 50 s ahead
      yield* append(b, "b", "b1", opts("any")) // b's first: slow path, the database's time
      yield* append(a, "a", "a3", opts("any")) // a's belief is stale (CN001): slow path, the database's time
      const stored = yield* rows(yield* session(url))
      const times = stored.map((r) => `${r.name}@${r.recorded_ms - stored[0]!.recorded_ms}ms`)
      const backwards = stored.filter((r, i) => i > 0 && r.recorded_ms < stored[i - 1]!.recorded_ms).map((r) => r.name)
      expect({ times, backwards }).toEqual({ times, backwards: [] })
    }))
})
