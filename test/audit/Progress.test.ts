/** verify's progress line: the bar fills with the share done, the rate and the time left follow the elapsed time. */
import { describe, expect, it } from "@effect/vitest"
import * as Progress from "../../audit/Progress.ts"

describe("Progress", () => {
  it("shows the share done, the count, the rate and the time left", () => {
    expect(Progress.render(250_000, 1_000_000, 2_000)).toBe(
      "[██████░░░░░░░░░░░░░░░░░░]  25%  250,000/1,000,000 events  125,000 ev/s  ETA 6s"
    )
    expect(Progress.render(1_000_000, 1_000_000, 8_000)).toMatch(/^\[█{24}\] 100% {2}1,000,000\/1,000,000 events {2}125,000 ev\/s {2}ETA 0s$/)
    expect(Progress.render(0, 10, 0)).toMatch(/ {3}0% {2}0\/10 events {2}0 ev\/s {2}ETA \?$/)
  })

  it("writes long times in minutes and hours", () => {
    expect([59, 185, 3_720, 7_199].map(Progress.formatSeconds)).toEqual(["59s", "3m05s", "1h02m", "1h59m"])
  })
})
