import { describe, expect, it } from "vitest"
import * as TokenBucket from "../../core/TokenBucket.ts"

describe("TokenBucket", () => {
  it("allows a burst, then the refill rate, per key", () => {
    let t = 0
    const buckets = TokenBucket.make({ perSecond: 10, burst: 5, now: () => t })
    const took = Array.from({ length: 8 }, () => buckets.take("a"))
    expect(took).toEqual([true, true, true, true, true, false, false, false])
    expect(buckets.take("b")).toBe(true)
    t += 100
    expect(buckets.take("a")).toBe(true)
    expect(buckets.take("a")).toBe(false)
    t += 1_000
    expect(Array.from({ length: 6 }, () => buckets.take("a")).filter(Boolean)).toHaveLength(5)
  })

  it("evicts buckets that have refilled, so 100,000 one-off keys leave nothing behind", () => {
    let t = 0
    const buckets = TokenBucket.make({ perSecond: 100, burst: 10, now: () => t })
    for (let i = 0; i < 100_000; i++) buckets.take(`stranger-${i}`)
    expect(buckets.size()).toBe(100_000)
    t += 200
    buckets.take("honest")
    expect(buckets.size()).toBe(1)
  })

  it("keeps an empty bucket empty while its key keeps trying", () => {
    let t = 0
    const buckets = TokenBucket.make({ perSecond: 1, burst: 1, now: () => t })
    expect(buckets.take("a")).toBe(true)
    for (let i = 0; i < 10; i++) {
      t += 50
      expect(buckets.take("a")).toBe(false)
    }
    t += 1_000
    expect(buckets.take("a")).toBe(true)
  })

  it("charges a costly action more, and the debt delays the next ones", () => {
    let t = 0
    const buckets = TokenBucket.make({ perSecond: 10, burst: 10, now: () => t })
    expect(buckets.take("a", 10)).toBe(true)
    expect(buckets.take("a")).toBe(false)
    expect(buckets.take("b", 25)).toBe(true)
    t += 1_000
    expect(buckets.take("b")).toBe(false)
    t += 1_600
    expect(buckets.take("b")).toBe(true)
  })
})
