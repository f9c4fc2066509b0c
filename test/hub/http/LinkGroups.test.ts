/**
 * The records of requests let through a link, appended in groups: what ends while an append is on its way goes in one
 * append per link, address and user agent, one event per request, each request exactly once, also when an append's
 * reply is lost; a group the log cannot take is spooled event by event, and one it refuses is appended one by one so
 * that only a bad record is lost.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, FiberSet, Schedule } from "effect"
import { EventLog, EventLogError } from "../../../core/EventLog.ts"
import { EventMeta, LinkAccessed } from "../../../core/Events.ts"
import { LinkId, ServiceId, Streams, uuidv7 } from "../../../core/Ids.ts"
import * as MemoryEventLog from "../../../core/MemoryEventLog.ts"
import * as FactRecorder from "../../../hub/eventlog/FactRecorder.ts"
import * as Spool from "../../../hub/eventlog/Spool.ts"
import * as LinkGroups from "../../../hub/http/LinkGroups.ts"

const linkId = LinkId.make(uuidv7())
const stream = Streams.link(linkId)
const workspaceId = uuidv7()
const metaOf = (ip: string) => new EventMeta({ actor: { kind: "public" }, sourceIp: ip })

const access = (n: number, path = `/r/${n}`) =>
  new LinkAccessed({
    linkId,
    serviceId: ServiceId.make(uuidv7()),
    ip: "203.0.113.9",
    method: "GET",
    path,
    status: 200,
    outcome: "allowed",
    bytes: 10,
    durationMs: n
  }, true)

const noRetry = Schedule.recurs(0)

/** Groups over `log` (the memory log, or a wrapper of it), a spool in a fresh directory, and a fork that is awaited. */
const setUp = (
  wrap: (log: EventLog["Type"]) => EventLog["Type"],
  retry: Schedule.Schedule<unknown> = noRetry,
  now: () => number = Date.now
) =>
  Effect.gen(function*() {
    const memory = yield* MemoryEventLog.make
    const log = wrap(memory.log)
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-linkgroups-"))),
      (d) => Effect.sync(() => Fs.rmSync(d, { recursive: true, force: true }))
    )
    const spool = yield* Spool.make(dir)
    const fibers = yield* FiberSet.make<void>()
    const run = yield* FiberSet.runtime(fibers)<never>()
    const facts = yield* FactRecorder.make(spool, retry).pipe(Effect.provideService(EventLog, log))
    const groups = yield* LinkGroups.make(facts, (effect) => void run(effect), now)
    const stored = Effect.map(memory.log.readStream(stream), (events) => events.map((e) => e.event as LinkAccessed))
    const spooled = () =>
      Fs.readFileSync(Path.join(dir, "spool.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { id: string; data: { durationMs: number } })
    return { memory, groups, spool, stored, spooled, settled: FiberSet.awaitEmpty(fibers), stop: FiberSet.clear(fibers) }
  })

const add = (groups: LinkGroups.LinkGroups, ip: string, event: LinkAccessed) =>
  groups.add(`${linkId}\0${ip}`, { stream, workspaceId, meta: metaOf(ip) }, event)

describe("LinkGroups", () => {
  it.scoped("what ends while an append is on its way goes in one append per address, each request once", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const appends: Array<number> = []
      const { groups, settled, stored } = yield* setUp((log) => ({
        ...log,
        append: (s, events, options) => {
          appends.push(events.length)
          const wait = appends.length === 1 ? Deferred.await(gate) : Effect.void
          return Effect.zipRight(wait, log.append(s, events, options))
        }
      }))
      add(groups, "203.0.113.9", access(0))
      yield* Effect.yieldNow()
      for (let n = 1; n < 100; n++) add(groups, n % 2 === 0 ? "203.0.113.9" : "198.51.100.7", access(n))
      expect(groups.pending()).toBe(99)
      yield* Deferred.succeed(gate, undefined)
      yield* settled
      // The lone first record at once; the 99 that ended behind it in two appends (two addresses), not 99.
      expect(appends.sort((a, b) => a - b)).toEqual([1, 49, 50])
      const events = yield* stored
      expect(events.map((e) => e.durationMs).sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, n) => n))
      expect(groups.pending()).toBe(0)
    }))

  it.scoped("a group whose reply was lost is appended again with the same ids: stored once", () =>
    Effect.gen(function*() {
      const { groups, memory, settled, stored } = yield* setUp((log) => log, Schedule.recurs(2))
      memory.failNextAppend("replyLost")
      for (let n = 0; n < 10; n++) add(groups, "203.0.113.9", access(n))
      yield* settled
      const events = yield* memory.log.readStream(stream)
      expect(events).toHaveLength(10)
      expect(new Set(events.map((e) => e.id)).size).toBe(10)
      expect((yield* stored).map((e) => e.durationMs)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    }))

  it.scoped("a group the log cannot take is spooled event by event, each with an id of its own", () =>
    Effect.gen(function*() {
      const down = new EventLogError({ reason: "Unavailable", message: "down" })
      const { groups, settled, spool, spooled } = yield* setUp((log) => ({ ...log, append: () => Effect.fail(down) }))
      for (let n = 0; n < 7; n++) add(groups, "203.0.113.9", access(n))
      yield* settled
      expect(spool.pending()).toBe(7)
      const lines = spooled()
      expect(lines.map((l) => l.data.durationMs)).toEqual([0, 1, 2, 3, 4, 5, 6])
      expect(new Set(lines.map((l) => l.id)).size).toBe(7)
    }))

  it.scoped("a group the log refuses is appended one by one: only the bad record is lost", () =>
    Effect.gen(function*() {
      const { groups, settled, stored } = yield* setUp((log) => log)
      add(groups, "203.0.113.9", access(0))
      add(groups, "203.0.113.9", access(1, "/bad\u0000"))
      add(groups, "203.0.113.9", access(2))
      yield* settled
      expect((yield* stored).map((e) => e.durationMs)).toEqual([0, 2])
    }))

  it.scoped("a group whose append is interrupted (the hub stopping) is spooled, each event with the id it was sent with", () =>
    Effect.gen(function*() {
      const sent = yield* Deferred.make<ReadonlyArray<string>>()
      const { groups, spool, spooled, stop } = yield* setUp((log) => ({
        ...log,
        append: (_s, _events, options) => Effect.zipRight(Deferred.succeed(sent, options.ids ?? []), Effect.never)
      }))
      add(groups, "203.0.113.9", access(0))
      const ids = yield* Deferred.await(sent)
      yield* stop
      expect(spool.pending()).toBe(1)
      expect(spooled().map((l) => l.id)).toEqual(ids)
    }))

  it.scoped("an append on its way for more than STALL_MS is a stalled log, and so are MAX_GATHERED records waiting", () =>
    Effect.gen(function*() {
      let clock = 1_000_000
      const gate = yield* Deferred.make<void>()
      const appends: Array<number> = []
      const { groups, settled, stored } = yield* setUp((log) => ({
        ...log,
        append: (s, events, options) => {
          appends.push(events.length)
          return Effect.zipRight(appends.length === 1 ? Deferred.await(gate) : Effect.void, log.append(s, events, options))
        }
      }), noRetry, () => clock)
      add(groups, "203.0.113.9", access(0))
      yield* Effect.yieldNow()
      expect(groups.stalled()).toBe(false)
      clock += LinkGroups.STALL_MS
      expect(groups.stalled()).toBe(false)
      clock += 1
      expect(groups.stalled()).toBe(true)
      // While the first append hangs, records gather; past MAX_GATHERED each goes to the log on its own.
      for (let n = 1; n <= LinkGroups.MAX_GATHERED + 3; n++) add(groups, "198.51.100.7", access(n))
      expect(groups.pending()).toBe(LinkGroups.MAX_GATHERED)
      clock -= LinkGroups.STALL_MS + 1
      expect(groups.stalled()).toBe(true)
      yield* Deferred.succeed(gate, undefined)
      yield* settled
      expect(groups.stalled()).toBe(false)
      expect((yield* stored)).toHaveLength(LinkGroups.MAX_GATHERED + 4)
      // The lone first, 3 overflow records alone, the gathered ones in groups of at most MAX_GROUP.
      expect(appends.filter((n) => n === 1)).toHaveLength(4)
      expect(appends.reduce((a, b) => a + b, 0)).toBe(LinkGroups.MAX_GATHERED + 4)
    }))
})
