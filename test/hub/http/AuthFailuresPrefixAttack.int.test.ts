/**
 * A stranger who holds an IPv6 /48 (a tunnel broker hands one out for free) has 65,536 /64s, each a fresh address to
 * the per-address limit: bad API keys tried from a new /64 each time were each appended as an event of their own, one
 * per attempt. Refusals are counted per /48 too: past its allowance they are coalesced into one event per /48, reason
 * and window, and every attempt is still counted.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Hub from "../../support/Hub.ts"

const ATTEMPTS = 200

describe("bad API keys from many /64s of one /48", () => {
  it.scopedLive("are coalesced: a handful of events, every attempt counted", () =>
    Effect.gen(function*() {
      // Behind a trusted proxy the client address is X-Forwarded-For's: the test's way to send from many addresses.
      const hub = yield* Hub.start({ config: { trustProxy: ["127.0.0.1/32"] } })
      const statuses: Array<number> = []
      for (let i = 0; i < ATTEMPTS; i++) {
        const r = yield* Effect.promise(() =>
          fetch(`${hub.httpUrl}/v1/agents`, {
            headers: { authorization: `Bearer pc_${"0".repeat(40)}`, "x-forwarded-for": `2001:db8:7:${i.toString(16)}::1` }
          }).then(async (r) => (await r.text(), r.status))
        )
        statuses.push(r)
      }
      // Each is still refused as an unknown key: the /48's other hosts are not locked out.
      expect(statuses.every((s) => s === 401)).toBe(true)
      const refusals = Effect.map(hub.events, (es) => es.filter((e) => e.event._tag === "ApiKeyAuthFailed").map((e) => e.event as any))
      // The window (10 s) ends and is written.
      const deadline = Date.now() + 20_000
      while ((yield* refusals).reduce((n, e) => n + (e.count ?? 1), 0) < ATTEMPTS && Date.now() < deadline) {
        yield* Effect.sleep("200 millis")
      }
      const events = yield* refusals
      expect(events.reduce((n, e) => n + (e.count ?? 1), 0)).toBe(ATTEMPTS)
      // The /48's allowance (20, coming back at 0.2 a second) one by one, the rest in one event per window.
      expect(events.length).toBeLessThanOrEqual(30)
    }), 120_000)
})
