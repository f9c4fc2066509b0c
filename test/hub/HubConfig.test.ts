/** The hub's configuration values read from flags: `--denial-window`'s durations and its bounds. */
import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as HubConfig from "../../hub/HubConfig.ts"

describe("--denial-window", () => {
  it("takes 1s to 1m in ms, s or m; anything else is refused naming what it expects", () => {
    expect(["10s", "1000ms", "1m", "60s", " 30s "].map((t) => Either.getOrUndefined(HubConfig.parseDenialWindow(t))))
      .toEqual([10_000, 1_000, 60_000, 60_000, 30_000])
    for (const bad of ["999ms", "0s", "61s", "2m", "1h", "10", "1.5s", "-1s", "", "10x"]) {
      const parsed = HubConfig.parseDenialWindow(bad)
      expect(Either.isLeft(parsed), bad).toBe(true)
      if (Either.isLeft(parsed)) expect(parsed.left).toContain("--denial-window must be a duration from 1s to 1m")
    }
  })
})
