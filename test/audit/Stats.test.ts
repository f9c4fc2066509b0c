/**
 * The options of `connect audit --stats` (each bad value one clear error naming its option) and the window and days
 * they become: whole UTC hours, every day of the window listed, empty ones included.
 */
import { Either } from "effect"
import { describe, expect, it } from "vitest"
import { fillDays, windowOf } from "../../audit/PgStats.ts"
import { parseOptions, type RawStatsOptions } from "../../audit/Stats.ts"

const now = new Date("2026-11-30T10:20:00Z")
const parse = (raw: Partial<RawStatsOptions>) => parseOptions({ limit: 50, reveal: false, ...raw }, now)
const error = (raw: Partial<RawStatsOptions>) => {
  const result = parse(raw)
  return Either.isLeft(result) ? result.left.message : "accepted"
}

describe("--stats options", () => {
  it("takes relative and absolute times, a workspace id in any case, a breakdown", () => {
    const options = Either.getOrThrow(parse({ since: "30d", until: "2026-11-29T14:10:00Z", workspace: "0193ABCD-0000-7000-8000-000000000001", by: "ip" }))
    expect(options).toEqual({
      limit: 50,
      reveal: false,
      since: new Date("2026-10-31T10:20:00Z"),
      until: new Date("2026-11-29T14:10:00Z"),
      workspace: "0193abcd-0000-7000-8000-000000000001",
      by: "ip"
    })
  })

  it("refuses each bad value with a message naming its option", () => {
    expect(error({ since: "last week" })).toMatch(/^--since: "last week" is not a time/)
    expect(error({ since: "1d", until: "2d" })).toBe("--since: is after --until")
    expect(error({ workspace: "prod" })).toBe("--workspace: is not a workspace id (a UUID)")
    expect(error({ workspace: "x".repeat(100_000) })).toBe("--workspace: is not a workspace id (a UUID)")
    expect(error({ by: "month" })).toBe("--by: must be one of type, agent, service, ip, day, hour")
    expect(error({ limit: 0 })).toBe("--limit: must be a whole number from 1 to 10000")
  })
})

describe("the window", () => {
  it("is whole UTC hours: from the hour of --since to the end of the hour of --until", () => {
    expect(windowOf({ limit: 1, reveal: false, since: new Date("2026-11-30T10:20:00Z"), until: new Date("2026-11-30T12:00:00Z") }))
      .toEqual({ from: "2026-11-30T10:00:00.000Z", to: "2026-11-30T13:00:00.000Z" })
    expect(windowOf({ limit: 1, reveal: false })).toEqual({ from: null, to: null })
  })

  it("lists every day from the first to the last, empty ones as 0", () => {
    expect(fillDays([{ day: "2026-11-28", events: 3 }, { day: "2026-11-30", events: 5 }], "2026-11-27", "2026-11-30")).toEqual([
      { day: "2026-11-27", events: 0 },
      { day: "2026-11-28", events: 3 },
      { day: "2026-11-29", events: 0 },
      { day: "2026-11-30", events: 5 }
    ])
    expect(fillDays([], undefined, undefined)).toEqual([])
  })
})
