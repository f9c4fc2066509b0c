/**
 * A stranger refused 10,000 times must not grow the log by 10,000 events. One IPv6 host holds a whole /64 (SLAAC,
 * privacy addresses): counted per address, each of its requests from a fresh address in it was a first refusal,
 * appended on its own. Counted per /64, its refusals coalesce as one address's do.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { EventLog } from "../../../core/EventLog.ts"
import * as MemoryEventLog from "../../../core/MemoryEventLog.ts"
import * as AuthFailures from "../../../hub/http/AuthFailures.ts"

describe("auth failures from one IPv6 /64", () => {
  it("counts an IPv6 address under its /64 and an IPv4 address as it is", () => {
    expect(AuthFailures.addressKey("2001:db8:1:2:3:4:5:6")).toBe("2001:db8:1:2::/64")
    expect(AuthFailures.addressKey("2001:0db8:0001:0002::9")).toBe("2001:db8:1:2::/64")
    expect(AuthFailures.addressKey("2001:db8::1")).toBe("2001:db8:0:0::/64")
    expect(AuthFailures.addressKey("::1")).toBe("0:0:0:0::/64")
    expect(AuthFailures.addressKey("198.51.100.7")).toBe("198.51.100.7")
    expect(AuthFailures.addressKey("::ffff:198.51.100.7")).toBe("::ffff:198.51.100.7")
  })

  it.effect("10,000 refused keys from 10,000 addresses of one /64 are a handful of events that count them all", () =>
    Effect.gen(function*() {
      yield* Effect.scoped(Effect.gen(function*() {
        const failures = yield* AuthFailures.make({ window: "60 seconds" })
        for (let i = 1; i <= 10_000; i++) {
          yield* failures.record({ kind: "apikey", ip: `2001:db8:1:2:${(i >> 16).toString(16)}:${(i & 0xffff).toString(16)}:0:1`, reason: "unknown_api_key" })
        }
      }))
      const events = (yield* Effect.flatMap(EventLog, (log) => log.readAll(0, 100_000))).map((e) => e.event)
      expect(events.length).toBeLessThan(50)
      expect(events.reduce((n, e) => n + ((e as { count?: number }).count ?? 1), 0)).toBe(10_000)
    }).pipe(Effect.provide(MemoryEventLog.layer)))
})
