/**
 * The scenario of the outage tests for refusals a stranger can repeat (API keys, console sign-ins): one address is
 * refused within its allowance (each refusal appended), the hub's database goes away (a TcpProxy cut), the now-limited
 * address keeps trying (refused without the database, counted in its window), the windows end during the outage, and
 * the database comes back. The refusals happened, so every one must reach the log: spooled meanwhile, never only a
 * warning in the operational log.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { expect } from "@effect/vitest"
import { Effect } from "effect"
import * as Hub from "./Hub.ts"
import * as TcpProxy from "./TcpProxy.ts"
import * as TestDatabase from "./TestDatabase.ts"

/** What the scenario found: the refusals on the log after the outage (one per event, or the event's count). */
export interface Outcome {
  readonly recorded: number
  readonly spooledDuringOutage: boolean
}

const until = (check: Effect.Effect<boolean>, ms: number) =>
  Effect.gen(function*() {
    const deadline = Date.now() + ms
    while (!(yield* check) && Date.now() < deadline) yield* Effect.sleep("100 millis")
  })

/**
 * Runs the scenario with `attempt` (the i-th wrong credential against the hub; its HTTP status), counting events of
 * type `tag`: 11 attempts before the cut (all 401; 10 within the allowance), 20 during it (all 429), 31 in all.
 */
export const run = (
  tag: string,
  attempt: (hub: Hub.TestHub, i: number) => Effect.Effect<number>
) =>
  Effect.gen(function*() {
    const url = new URL(yield* TestDatabase.makeTestDatabaseUrl)
    const proxy = yield* TcpProxy.start(url.hostname, Number(url.port || 5432))
    url.hostname = "127.0.0.1"
    url.port = String(proxy.port)
    // A 5 s window, also the address's lock-out: long enough for 20 attempts on a loaded machine.
    const hub = yield* Hub.start({ databaseUrl: url.toString(), config: { denialWindowMs: 5_000 } })
    const recorded = Effect.map(hub.events, (events) =>
      events
        .filter((e) => e.event._tag === tag)
        .reduce((n, e) => n + ((e.event as { count?: number }).count ?? 1), 0))

    const before: Array<number> = []
    for (let i = 0; i < 11; i++) before.push(yield* attempt(hub, i))
    expect(before.filter((s) => s === 401)).toHaveLength(11)
    yield* until(Effect.map(recorded, (n) => n >= 10), 10_000)

    proxy.cut()
    const during: Array<number> = []
    for (let i = 11; i < 31; i++) during.push(yield* attempt(hub, i))
    expect(during.every((s) => s === 429)).toBe(true)
    // The windows end while the log is away.
    yield* Effect.sleep("8 seconds")
    const spoolFile = Path.join(hub.dataDir, "spool", "spool.jsonl")
    const spooled = Fs.existsSync(spoolFile) ? Fs.readFileSync(spoolFile, "utf8").trim().split("\n").length : 0

    proxy.restore()
    yield* until(Effect.map(recorded, (n) => n >= 31), 20_000)
    return { recorded: yield* recorded, spooledDuringOutage: spooled > 0 } satisfies Outcome
  })

/** The i-th wrong API key (well-formed, so that it is looked up). */
export const badKey = (i: number) => `pc_${String(i).padStart(40, "0")}`
