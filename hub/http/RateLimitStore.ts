/**
 * An in-memory `RateLimiterStore` for `@effect/experimental`'s `RateLimiter` that forgets what it no longer needs.
 * The library's `layerStoreMemory` keeps a counter for every key it ever saw: keyed by client address, 10,000
 * strangers (or one IPv6 host walking its /64's neighbours) grow the hub's memory for ever. This store counts the same
 * way (the library's fixed window and token bucket, to the millisecond) and drops an entry once it carries nothing: a
 * fixed window whose time ran out, a bucket that has filled up again. Expired entries are swept after as many
 * operations as there are entries (at least `SWEEP_EVERY`), so the sweep costs O(1) per operation, and by the first
 * operation `SWEEP_MS` after the last sweep, so a flood that stopped is forgotten by the next request: the store holds
 * the keys active within one window and those of the last few seconds.
 */
import * as RateLimiter from "@effect/experimental/RateLimiter"
import { Duration, Effect, Layer } from "effect"

/** Operations between two sweeps at least (a small store is not swept on every call). */
const SWEEP_EVERY = 1_024

/** Time between two sweeps at most, while operations come (a sweep of 100,000 keys takes a few ms). */
const SWEEP_MS = 10_000

/** A store and how many keys it holds. */
export interface MemoryStore {
  readonly store: RateLimiter.RateLimiterStore["Type"]
  /** Keys held now (counters and buckets). */
  readonly size: () => number
}

interface Counter {
  count: number
  expiresAt: number
}

interface Bucket {
  tokens: number
  lastRefill: number
  /** When the bucket is full again (nothing to remember from then on). */
  fullAt: number
}

/** Makes an empty store (on the Effect clock of each call). */
export const make = (): MemoryStore => {
  const counters = new Map<string, Counter>()
  const buckets = new Map<string, Bucket>()
  let operations = 0
  let sweptAt = 0

  const sweep = (now: number) => {
    operations++
    if (operations < Math.max(SWEEP_EVERY, counters.size + buckets.size) && now - sweptAt < SWEEP_MS) return
    operations = 0
    sweptAt = now
    for (const [key, counter] of counters) if (counter.expiresAt <= now) counters.delete(key)
    for (const [key, bucket] of buckets) if (bucket.fullAt <= now) buckets.delete(key)
  }

  const store = RateLimiter.RateLimiterStore.of({
    fixedWindow: (options) =>
      Effect.clockWith((clock) =>
        Effect.sync(() => {
          const refillRateMillis = Duration.toMillis(options.refillRate)
          const now = clock.unsafeCurrentTimeMillis()
          sweep(now)
          let counter = counters.get(options.key)
          if (!counter || counter.expiresAt <= now) {
            counter = { count: 0, expiresAt: now }
            counters.set(options.key, counter)
          }
          if (options.limit && counter.count + options.tokens > options.limit) {
            return [counter.count + options.tokens, counter.expiresAt - now] as const
          }
          counter.count += options.tokens
          counter.expiresAt += refillRateMillis * options.tokens
          return [counter.count, counter.expiresAt - now] as const
        })
      ),
    tokenBucket: (options) =>
      Effect.clockWith((clock) =>
        Effect.sync(() => {
          const refillRateMillis = Duration.toMillis(options.refillRate)
          const now = clock.unsafeCurrentTimeMillis()
          sweep(now)
          let bucket = buckets.get(options.key)
          if (!bucket) {
            bucket = { tokens: options.limit, lastRefill: now, fullAt: now }
            buckets.set(options.key, bucket)
          } else {
            const tokensToAdd = Math.floor((now - bucket.lastRefill) / refillRateMillis)
            if (tokensToAdd > 0) {
              bucket.tokens = Math.min(options.limit, bucket.tokens + tokensToAdd)
              bucket.lastRefill += tokensToAdd * refillRateMillis
            }
          }
          const newTokenCount = bucket.tokens - options.tokens
          if (options.allowOverflow || newTokenCount >= 0) bucket.tokens = newTokenCount
          bucket.fullAt = bucket.lastRefill + Math.max(0, options.limit - bucket.tokens) * refillRateMillis
          return newTokenCount
        })
      )
  })
  return { store, size: () => counters.size + buckets.size }
}

/** A fresh store as the `RateLimiterStore` layer. */
export const layerMemory: Layer.Layer<RateLimiter.RateLimiterStore> = Layer.sync(RateLimiter.RateLimiterStore, () => make().store)
