/**
 * The console's sign-in limiter: a short coalescing window (`--denial-window 1s`) must not shorten an address's
 * lock-out below 10 s, or a guesser past the limit would get a fresh allowance of attempts every second.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as MemoryEventLog from "../../../core/MemoryEventLog.ts"
import * as SignInFailures from "../../../hub/console/SignInFailures.ts"

const wait = (ms: number) => Effect.promise(() => new Promise((resolve) => setTimeout(resolve, ms)))

describe("SignInFailures", () => {
  it.scoped("with a 1 s window, an address past its limit is still locked out after the window ends", () =>
    Effect.gen(function*() {
      const failures = yield* SignInFailures.make({ windowMs: 1_000, burst: 2, perSecond: 0.1 })
      const ip = "198.51.100.7"
      for (let i = 0; i < 4 && !failures.limited(ip); i++) yield* failures.record({ reason: "unknown_api_key", ip })
      expect(failures.limited(ip)).toBe(true)
      yield* wait(1_500)
      expect(failures.limited(ip)).toBe(true)
    }).pipe(Effect.provide(MemoryEventLog.layer), Effect.orDie), 20_000)
})
