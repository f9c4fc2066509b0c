/**
 * `--denial-window` (HubConfig.denialWindowMs) reaches every coalescer of the hub: refused API keys, console sign-ins,
 * link tokens and share codes. A flood's coalesced event is written when its window ends, so with a 1 s window it is
 * on the log within a few seconds of the first refusal, where the default 10 s would keep it away for 10.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Hub from "../support/Hub.ts"

const post = (url: string, body: unknown, bearer?: string) =>
  Effect.promise(async () => {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) },
      body: JSON.stringify(body)
    })
    await response.arrayBuffer()
    return response.status
  })

const get = (url: string) =>
  Effect.promise(async () => {
    const response = await fetch(url)
    await response.arrayBuffer()
    return response.status
  })

describe("--denial-window", () => {
  it.scopedLive("a window of 1 s: every kind of coalesced refusal is on the log within 5 s of the last", () =>
    Effect.gen(function*() {
      const hub = yield* Hub.start({ config: { denialWindowMs: 1_000 } })
      const { apiKey } = yield* hub.workspace("w")
      const agent = (yield* hub.http("POST", "/v1/agents", apiKey, { label: "joiner" })).body as { token: string }

      // Past the address's allowance (10) for keys and sign-ins; two of the others (the first recorded at once).
      const statuses = yield* Effect.all([
        ...Array.from({ length: 14 }, (_, i) => post(`${hub.httpUrl}/v1/agents`, { label: "x" }, `pc_${"w".repeat(40)}${i}`)),
        ...Array.from({ length: 14 }, (_, i) => post(`${hub.httpUrl}/ui/session`, { apiKey: `pc_${"s".repeat(40)}${i}` })),
        ...Array.from({ length: 3 }, (_, i) => get(`${hub.httpUrl}/l/${"0".repeat(39)}${i}/`)),
        ...Array.from({ length: 3 }, (_, i) => post(`${hub.httpUrl}/v1/shares/join`, { code: `sh_${"0".repeat(31)}${i}` }, agent.token))
      ], { concurrency: 8 })
      expect(statuses.every((s) => s >= 401 && s <= 429)).toBe(true)

      const sent = Date.now()
      const counted = (type: string, all: ReadonlyArray<{ event: unknown }>) =>
        all.map((e) => e.event as { _tag: string; count?: number }).filter((e) => e._tag === type && e.count !== undefined)
      const types = ["ApiKeyAuthFailed", "ConsoleSignInFailed", "LinkAccessed", "ShareAccessed"]
      let missing = types
      while (missing.length > 0 && Date.now() - sent < 5_000) {
        yield* Effect.sleep("100 millis")
        const all = yield* hub.events
        missing = types.filter((type) => counted(type, all).length === 0)
      }
      // With the default window (10 s) the link's and the share's, begun last, would not be written yet.
      expect(missing).toEqual([])
    }), 60_000)
})
