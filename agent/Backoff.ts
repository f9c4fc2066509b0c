/**
 * Reconnect delays: exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff and Jitter"):
 * attempt n waits a uniformly random time in [0, min(cap, base·2ⁿ)), so a fleet of agents that lost the same hub does
 * not come back in lockstep. The first retry waits < 500 ms; no wait exceeds 30 s.
 */
import { Duration } from "effect"

/** Options of `make`. */
export interface BackoffOptions {
  /** Ceiling of the first delay (default 500 ms). */
  readonly base?: Duration.DurationInput
  /** Largest delay (default 30 s). */
  readonly cap?: Duration.DurationInput
  /** Uniform random source in [0, 1) (default `Math.random`); inject a seeded one for deterministic tests. */
  readonly random?: () => number
}

/**
 * A connection that stayed up this long counts as stable and resets the backoff; one that drops sooner (a hub that
 * accepts and then refuses, a flapping network) keeps growing the delays.
 */
export const STABLE_AFTER_MS = 10_000

/** A sequence of reconnect delays. */
export interface Backoff {
  /** The delay before the next attempt, in ms; each call grows the ceiling. */
  readonly next: () => number
  /** Starts over from the first delay (after a stable connection). */
  readonly reset: () => void
  /** Attempts since the last reset. */
  readonly attempts: () => number
}

/** A backoff with the defaults of DESIGN.md (first retry ≤ 500 ms, cap 30 s). */
export const make = (options: BackoffOptions = {}): Backoff => {
  const base = Duration.toMillis(options.base ?? "500 millis")
  const cap = Duration.toMillis(options.cap ?? "30 seconds")
  const random = options.random ?? Math.random
  let attempt = 0
  return {
    next: () => {
      // 2^attempt is capped before it can overflow into Infinity; past ~2^16 every ceiling is the cap anyway.
      const ceiling = Math.min(cap, base * 2 ** Math.min(attempt, 30))
      attempt++
      return Math.floor(random() * ceiling)
    },
    reset: () => {
      attempt = 0
    },
    attempts: () => attempt
  }
}

/** A deterministic uniform random source in [0, 1) (mulberry32), for tests. */
export const seeded = (seed: number): (() => number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
