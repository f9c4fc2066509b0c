/**
 * A stranger tries API keys at the web console's sign-in while the hub's event log is unreachable: the refusals
 * happened, so they must reach the log once it is back (spooled meanwhile, as the relay's are), never only a warning
 * in the operational log. Every attempt is on the record: the events' counts add up to the attempts made.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as RefusalOutage from "../../support/RefusalOutage.ts"

describe("console sign-in refusals while the log is unreachable", () => {
  it.scopedLive("reach the log once it is back: every attempt counted", () =>
    Effect.gen(function*() {
      const outcome = yield* RefusalOutage.run("ConsoleSignInFailed", (hub, i) =>
        Effect.promise(async () => {
          const r = await fetch(`${hub.httpUrl}/ui/session`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ apiKey: RefusalOutage.badKey(i) })
          })
          await r.text()
          return r.status
        }))
      expect(outcome).toEqual({ recorded: 31, spooledDuringOutage: true })
    }), 90_000)
})
