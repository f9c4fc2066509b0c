/**
 * A stranger tries API keys at the web console's sign-in while the hub's event log is unreachable: the refusals happened, so they
 * must reach the log once it is back (spooled meanwhile, as the relay's are), never only a warning in the operational
 * log. Every attempt is on the record: the events' counts add up to the attempts made.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Hub from "../../support/Hub.ts"
import * as TcpProxy from "../../support/TcpProxy.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"

const badKey = (i: number) => `pc_${String(i).padStart(40, "0")}`

const attempt = (hub: Hub.TestHub, i: number) =>
  Effect.promise(() => fetch(`${hub.httpUrl}/ui/session`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ apiKey: badKey(i) }) })).pipe(
    Effect.flatMap((r) => Effect.promise(() => r.text().then(() => r.status)))
  )

/** Attempts recorded: one per event, or the event's count. */
const recorded = (hub: Hub.TestHub) =>
  Effect.map(hub.events, (events) =>
    events
      .filter((e) => e.event._tag === "ConsoleSignInFailed")
      .reduce((n, e) => n + ((e.event as { count?: number }).count ?? 1), 0))

const until = (check: Effect.Effect<boolean>, ms: number) =>
  Effect.gen(function*() {
    const deadline = Date.now() + ms
    while (!(yield* check) && Date.now() < deadline) yield* Effect.sleep("100 millis")
  })

describe("console sign-in refusals while the log is unreachable", () => {
  it.scopedLive("reach the log once it is back: every attempt counted", () =>
    Effect.gen(function*() {
      const url = new URL(yield* TestDatabase.makeTestDatabaseUrl)
      const proxy = yield* TcpProxy.start(url.hostname, Number(url.port || 5432))
      url.hostname = "127.0.0.1"
      url.port = String(proxy.port)
      const hub = yield* Hub.start({ databaseUrl: url.toString(), config: { denialWindowMs: 1_000 } })

      // Within the address's allowance each refusal is appended (401); past it the address is limited (429).
      const before: Array<number> = []
      for (let i = 0; i < 11; i++) before.push(yield* attempt(hub, i))
      expect(before.filter((s) => s === 401)).toHaveLength(11)
      yield* until(Effect.map(recorded(hub), (n) => n >= 10), 10_000)
      expect(yield* recorded(hub)).toBe(10)

      // The log goes away; the limited address keeps trying (refused without the database, counted in its window).
      proxy.cut()
      const during: Array<number> = []
      for (let i = 11; i < 31; i++) during.push(yield* attempt(hub, i))
      expect(during.every((s) => s === 429)).toBe(true)
      // The windows end (1 s) while the log is away.
      yield* Effect.sleep("4 seconds")
      const spoolFile = Path.join(hub.dataDir, "spool", "spool.jsonl")
      const spooled = Fs.existsSync(spoolFile) ? Fs.readFileSync(spoolFile, "utf8").trim().split("\n").length : 0

      proxy.restore()
      yield* until(Effect.map(recorded(hub), (n) => n >= 31), 20_000)
      expect({ recorded: yield* recorded(hub), spooledDuringOutage: spooled > 0 }).toEqual({ recorded: 31, spooledDuringOutage: true })
    }), 90_000)
})
