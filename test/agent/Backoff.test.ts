/**
 * Reconnect backoff: full jitter under an exponential ceiling, first retry ≤ 500 ms, capped at 30 s, reset.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Backoff from "../../agent/Backoff.ts"

describe("Backoff", () => {
  it("doubles the ceiling per attempt up to the cap (random at its maximum)", () => {
    const backoff = Backoff.make({ random: () => 0.999999 })
    const delays = Array.from({ length: 10 }, () => backoff.next())
    expect(delays).toEqual([499, 999, 1999, 3999, 7999, 15999, 29999, 29999, 29999, 29999])
  })

  it("full jitter: any delay from 0 to the ceiling (random at its minimum)", () => {
    const backoff = Backoff.make({ random: () => 0 })
    expect(Array.from({ length: 5 }, () => backoff.next())).toEqual([0, 0, 0, 0, 0])
  })

  it("with a seeded random: deterministic, within bounds, and spread out", () => {
    const run = () => {
      const backoff = Backoff.make({ random: Backoff.seeded(42) })
      return Array.from({ length: 40 }, () => backoff.next())
    }
    const delays = run()
    expect(run()).toEqual(delays)
    expect(delays[0]).toBeLessThanOrEqual(500)
    delays.forEach((delay, n) => {
      expect(delay).toBeGreaterThanOrEqual(0)
      expect(delay).toBeLessThan(Math.min(30_000, 500 * 2 ** n))
    })
    // Past the cap, delays are spread over [0, 30 s), not pinned to it.
    const late = delays.slice(10)
    expect(Math.min(...late)).toBeLessThan(10_000)
    expect(Math.max(...late)).toBeGreaterThan(20_000)
  })

  it("starts over after reset (a stable connection)", () => {
    const backoff = Backoff.make({ random: () => 0.999999 })
    backoff.next()
    backoff.next()
    backoff.next()
    expect(backoff.attempts()).toBe(3)
    backoff.reset()
    expect(backoff.attempts()).toBe(0)
    expect(backoff.next()).toBe(499)
  })

  it("never overflows however long the hub stays away", () => {
    const backoff = Backoff.make({ random: () => 0.999999 })
    for (let i = 0; i < 5_000; i++) backoff.next()
    expect(backoff.next()).toBe(29999)
  })
})
