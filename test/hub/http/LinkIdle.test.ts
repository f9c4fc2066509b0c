/**
 * The idle timeout of forwarded link exchanges, swept instead of timed per request: an exchange is cut once it has
 * seen no byte for the timeout (never before), a byte postpones it, a finished exchange is never cut.
 */
import { describe, expect, it } from "vitest"
import * as LinkIdle from "../../../hub/http/LinkIdle.ts"

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe("LinkIdle", () => {
  it("cuts an exchange idle for the timeout, not before, and stops sweeping once none is watched", async () => {
    const watch = LinkIdle.make(200)
    const started = performance.now()
    const cut = await new Promise<number>((resolve) => void watch.watch(() => resolve(performance.now() - started)))
    expect(cut).toBeGreaterThanOrEqual(200)
    expect(cut).toBeLessThan(1_500)
    expect(watch.size()).toBe(0)
  })

  it("a byte postpones the cut; a stopped exchange is never cut", async () => {
    const watch = LinkIdle.make(200)
    let moving = 0
    const alive = watch.watch(() => void (moving = -1))
    let stoppedCut = false
    const stopped = watch.watch(() => void (stoppedCut = true))
    stopped.stop()
    // A byte every 100 ms for 600 ms: three times the timeout, never idle for it.
    for (let i = 0; i < 6; i++) {
      await sleep(100)
      if (moving === -1) break
      alive.touch()
      moving++
    }
    expect(moving).toBe(6)
    const lastByte = performance.now()
    while (moving !== -1 && performance.now() - lastByte < 2_000) await sleep(20)
    expect(moving).toBe(-1)
    expect(performance.now() - lastByte).toBeGreaterThanOrEqual(200)
    expect(stoppedCut).toBe(false)
  })
})
