/**
 * The link proxy's rate limits, keyed by client address, must not grow the hub for ever: 100,000 strangers' counters
 * are gone once their window has passed, while every limit still holds exactly as `@effect/experimental` counts it.
 */
import * as V8 from "node:v8"
import * as Vm from "node:vm"
import * as RateLimiter from "@effect/experimental/RateLimiter"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Either, TestClock } from "effect"
import * as RateLimitStore from "../../../hub/http/RateLimitStore.ts"

V8.setFlagsFromString("--expose-gc")
const gc = Vm.runInNewContext("gc") as () => void

const heap = () => {
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

/** What the proxy does per request: one fixed-window token for `key`, refused past 10 a minute. */
const consume = (limiter: RateLimiter.RateLimiter, key: string) =>
  limiter.consume({ key, limit: 10, window: "1 minute", algorithm: "fixed-window", onExceeded: "fail" })

describe("the link proxy's rate-limit store", () => {
  it.effect("forgets 100,000 addresses once their window has passed (the library's memory store kept every one)", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make.pipe(Effect.provide(RateLimitStore.layerMemory))
      const before = heap()
      for (let i = 0; i < 100_000; i++) yield* consume(limiter, `link-0000\u0000198.51.${i >> 8}.${i & 0xff}-${i}`)
      const flooded = heap() - before
      yield* TestClock.adjust("2 minutes")
      // Later traffic from a few honest clients is what sweeps the stale counters.
      for (let i = 0; i < 2_000; i++) yield* consume(limiter, `link-0000\u0000203.0.113.${i & 0xff}`)
      const after = heap() - before
      // 100,000 counters are several MB; what is left is the honest clients' 256 counters and the map's slack.
      expect(flooded).toBeGreaterThan(5_000_000)
      expect(after).toBeLessThan(2_000_000)
    }), 60_000)

  it.effect("counts a fixed window as the library does: the 11th request of a minute is refused, the next minute allowed", () =>
    Effect.gen(function*() {
      const memory = RateLimitStore.make()
      const limiter = yield* RateLimiter.make.pipe(Effect.provideService(RateLimiter.RateLimiterStore, memory.store))
      for (let i = 0; i < 10; i++) expect(Either.isRight(yield* Effect.either(consume(limiter, "a")))).toBe(true)
      const refused = yield* Effect.flip(consume(limiter, "a"))
      expect(refused.reason).toBe("Exceeded")
      if (refused.reason === "Exceeded") expect(Duration.toMillis(refused.retryAfter)).toBeGreaterThan(0)
      yield* TestClock.adjust("61 seconds")
      expect(Either.isRight(yield* Effect.either(consume(limiter, "a")))).toBe(true)
      expect(memory.size()).toBe(1)
    }))

  it.effect("drops a token bucket once it has filled up again, and keeps one still draining", () =>
    Effect.gen(function*() {
      const memory = RateLimitStore.make()
      const limiter = yield* RateLimiter.make.pipe(Effect.provideService(RateLimiter.RateLimiterStore, memory.store))
      const take = (key: string) =>
        limiter.consume({ key, limit: 5, window: "5 seconds", algorithm: "token-bucket", onExceeded: "fail" })
      for (let i = 0; i < 5; i++) yield* take("drained")
      expect(Either.isLeft(yield* Effect.either(take("drained")))).toBe(true)
      for (let i = 0; i < 3_000; i++) yield* take(`k${i}`)
      expect(memory.size()).toBe(3_001)
      // Half a second: no token back yet (one per second), so nothing may be forgotten.
      yield* TestClock.adjust("500 millis")
      for (let i = 0; i < 3_100; i++) yield* Effect.either(take("other"))
      expect(Either.isLeft(yield* Effect.either(take("drained")))).toBe(true)
      expect(memory.size()).toBeGreaterThan(3_000)
      yield* TestClock.adjust("10 seconds")
      for (let i = 0; i < 3_100; i++) yield* Effect.either(take("fresh"))
      expect(memory.size()).toBeLessThanOrEqual(3)
      expect(Either.isRight(yield* Effect.either(take("drained")))).toBe(true)
    }))
})
