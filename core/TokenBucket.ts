/**
 * Token buckets by key (an agent, an address): `rate` tokens a second up to `burst`, one taken per action. Pure and
 * synchronous, with the clock passed in, so the relay can ask it per frame without an Effect and tests need no
 * timers. A bucket that has refilled to `burst` is the same as no bucket, so it is evicted: the memory a stranger
 * can make it hold is bounded by the keys active within one refill time, never by every key ever seen (the memory
 * store of `@effect/experimental`'s RateLimiter keeps every key).
 */

/** Limits of a bucket. */
export interface TokenBucketOptions {
  /** Tokens added per second. */
  readonly perSecond: number
  /** Largest number of tokens a bucket holds (and what a new key starts with). */
  readonly burst: number
  /** The clock in ms (default `Date.now`). */
  readonly now?: () => number
}

/** Token buckets by key. */
export interface TokenBuckets {
  /** Takes `cost` tokens (default 1) of `key`; false when it has fewer than one (the action is refused). */
  readonly take: (key: string, cost?: number) => boolean
  /** Number of keys held (full buckets are evicted). */
  readonly size: () => number
}

interface Bucket {
  tokens: number
  at: number
}

/** Makes token buckets with the given limits. */
export const make = (options: TokenBucketOptions): TokenBuckets => {
  const now = options.now ?? Date.now
  const perMs = options.perSecond / 1000
  const buckets = new Map<string, Bucket>()
  // A bucket refills from empty in this long; a sweep after it finds every bucket untouched since then full.
  const refillMs = Math.ceil(options.burst / perMs)
  let sweptAt = now()

  const level = (bucket: Bucket, t: number) => Math.min(options.burst, bucket.tokens + (t - bucket.at) * perMs)

  const sweep = (t: number) => {
    sweptAt = t
    for (const [key, bucket] of buckets) if (level(bucket, t) >= options.burst) buckets.delete(key)
  }

  return {
    take: (key, cost = 1) => {
      const t = now()
      if (t - sweptAt >= refillMs) sweep(t)
      const bucket = buckets.get(key)
      const tokens = bucket === undefined ? options.burst : level(bucket, t)
      if (tokens < 1) {
        bucket!.tokens = tokens
        bucket!.at = t
        return false
      }
      // A cost above the tokens left takes the bucket below zero: a later refill pays it off first.
      if (bucket === undefined) buckets.set(key, { tokens: tokens - cost, at: t })
      else {
        bucket.tokens = tokens - cost
        bucket.at = t
      }
      return true
    },
    size: () => buckets.size
  }
}
