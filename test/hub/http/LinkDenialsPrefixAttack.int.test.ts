/**
 * A stranger holding an IPv6 /48 (65,536 /64s; a tunnel broker hands one out for free) sends unknown link tokens from
 * a fresh /64 each time: refusals are coalesced per /64, so without a /48 allowance each one was an event of its own.
 * The log must grow by a bounded number of events per /48 and window, and their counts add up to every refusal.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Hub from "../../support/Hub.ts"

const REQUESTS = 200

describe("link refusals from one IPv6 /48", () => {
  it.scopedLive("200 unknown tokens from 200 /64s: a few events, every refusal counted", () =>
    Effect.gen(function*() {
      // Addresses through a trusted proxy's X-Forwarded-For: the test's way to vary them on 127.0.0.1.
      const hub = yield* Hub.start({ config: { trustProxy: ["127.0.0.1/32"], denialWindowMs: 1_000 } })
      const statuses = new Set<number>()
      for (let i = 0; i < REQUESTS; i++) {
        statuses.add(yield* Effect.promise(() =>
          fetch(`${hub.httpUrl}/l/${"ab".repeat(20)}/x`, {
            headers: { "x-forwarded-for": `2001:db8:9:${i.toString(16)}::1` }
          }).then(async (r) => (await r.text(), r.status))
        ))
      }
      expect([...statuses].every((s) => s === 404 || s === 429)).toBe(true)
      const refusals = Effect.map(hub.events, (all) => {
        const accessed = all.filter((e) => e.event._tag === "LinkAccessed")
        return {
          events: accessed.length,
          count: accessed.reduce((n, e) => n + ((e.event as { count?: number }).count ?? 1), 0)
        }
      })
      // The windows end 1 s after their first refusal and are written within a second after that.
      let seen = yield* refusals
      for (let i = 0; i < 100 && seen.count < REQUESTS; i++) {
        yield* Effect.sleep("100 millis")
        seen = yield* refusals
      }
      expect(seen.count).toBe(REQUESTS)
      expect(seen.events).toBeLessThan(40)
    }), 120_000)
})
