/**
 * The EventLog contract, one suite run against every implementation (the memory log in test/core, Postgres in
 * test/hub/eventlog): expected versions and conflicts, gap-free ordered positions, the hash chain, caller ids answered
 * once, reads from a position, subscriptions, and refused appends. Each test works on streams of its own and positions
 * relative to the head it found, so one log serves the whole suite.
 */
import { afterAll, beforeAll, describe, expect, it as vitestIt } from "@effect/vitest"
import { Chunk, Effect, Either, Fiber, type Layer, ManagedRuntime, type Scope, Stream } from "effect"
import * as Verify from "../../audit/Verify.ts"
import { type AppendOptions, EventLog, type StoredEvent } from "../../core/EventLog.ts"
import { encodeEvent, type Event, EventMeta, WorkspaceCreated } from "../../core/Events.ts"
import { canonicalEnvelope, jsonbText } from "../../core/HashChain.ts"
import { uuidv7, WorkspaceId } from "../../core/Ids.ts"

const meta = new EventMeta({ actor: { kind: "admin", id: "contract" }, sourceIp: "192.0.2.1" })

const options = (expectedVersion: AppendOptions["expectedVersion"], more: Partial<AppendOptions> = {}): AppendOptions => ({
  expectedVersion,
  workspaceId: null,
  meta,
  ...more
})

const created = (name: string): Event => new WorkspaceCreated({ workspaceId: WorkspaceId.make(uuidv7()), name })

/** A stream no other test uses. */
const freshStream = () => `contract-${uuidv7()}`

const names = (events: ReadonlyArray<StoredEvent>) => events.map((e) => (e.event as WorkspaceCreated).name)

/** How an append failed, as text a failed assertion can print (vitest overflows its stack on a pg error's cause). */
const failure = <A, E extends { readonly _tag: string; readonly message: string; readonly reason?: string }>(
  append: Effect.Effect<A, E>
) => Effect.map(Effect.flip(append), (e) => `${e._tag} ${e.reason ?? ""}: ${e.message}`)

const REJECTED = /^EventLogError Rejected: /

/** The events after `after`, however many. */
const allAfter = (after: number) => Effect.flatMap(EventLog, (log) => log.readAll(after, 1_000_000))

/** Runs the contract against the log `layer` provides (built once for the whole suite). */
export const eventLogContract = (name: string, log: Layer.Layer<EventLog>) =>
  describe(`EventLog contract: ${name}`, () => {
    // The real clock: a subscriber of the Postgres log polls by it. Not @effect/vitest's layer(log, {
    // excludeTestServices: true }): after a file using it, it.effect in later files of the same worker (the unit
    // project reuses one, vitest.config.ts) ran on the live clock, so TestClock.adjust failed there.
    const runtime = ManagedRuntime.make(log)
    beforeAll(() => runtime.runPromise(Effect.void), 120_000)
    afterAll(() => runtime.dispose(), 120_000)
    const it = {
      scoped: <A, E>(title: string, self: () => Effect.Effect<A, E, EventLog | Scope.Scope>) =>
        vitestIt.live(title, () => self().pipe(Effect.scoped, Effect.provide(runtime)))
    }
    it.scoped("expected versions: no_stream on a new stream, then its exact version, or any", () =>
      Effect.gen(function* () {
        const log = yield* EventLog
        const { position: head } = yield* log.head
        const s = freshStream()
        expect(yield* log.append(s, [created("a1"), created("a2")], options("no_stream"))).toEqual({
          firstPosition: head + 1,
          lastPosition: head + 2,
          version: 2
        })
        expect(yield* log.append(s, [created("a3")], options(2))).toEqual({
          firstPosition: head + 3,
          lastPosition: head + 3,
          version: 3
        })
        expect(yield* log.append(s, [created("a4")], options("any"))).toMatchObject({ version: 4 })
        const t = freshStream()
        expect(yield* log.append(t, [created("b1")], options("any"))).toMatchObject({ version: 1 })
        expect(names(yield* log.readStream(s))).toEqual(["a1", "a2", "a3", "a4"])
      }))

    it.scoped("a version conflict names the stream, the expected and the actual version, and stores nothing", () =>
      Effect.gen(function* () {
        const log = yield* EventLog
        const s = freshStream()
        yield* log.append(s, [created("one"), created("two")], options("no_stream"))
        const { position: head } = yield* log.head
        for (const expected of ["no_stream", 1, 3] as const) {
          const conflict = yield* Effect.flip(log.append(s, [created("late")], options(expected)))
          expect(conflict).toMatchObject({ _tag: "VersionConflict", stream: s, expected, actual: 2 })
        }
        const conflict = yield* Effect.flip(log.append(freshStream(), [created("late")], options(1)))
        expect(conflict).toMatchObject({ _tag: "VersionConflict", expected: 1, actual: 0 })
        expect((yield* log.head).position).toBe(head)
        expect(names(yield* log.readStream(s))).toEqual(["one", "two"])
      }))

    it.scoped("positions are gap-free in append order across streams, versions gap-free per stream, under concurrency", () =>
      Effect.gen(function* () {
        const log = yield* EventLog
        const { position: head } = yield* log.head
        const streams = [freshStream(), freshStream(), freshStream()]
        const results = yield* Effect.forEach(
          Array.from({ length: 48 }, (_, i) => i),
          (i) => log.append(streams[i % 3]!, [created(`c${i}-1`), created(`c${i}-2`)], options("any")),
          { concurrency: 16 }
        )
        const stored = yield* allAfter(head)
        expect(stored.map((e) => e.position)).toEqual(Array.from({ length: 96 }, (_, i) => head + 1 + i))
        // Each append's events are adjacent, and each result names where they went.
        results.forEach((r, i) => {
          expect(r.lastPosition).toBe(r.firstPosition + 1)
          expect(names(stored.slice(r.firstPosition - head - 1, r.lastPosition - head))).toEqual([`c${i}-1`, `c${i}-2`])
        })
        for (const s of streams) {
          const versions = stored.filter((e) => e.stream === s).map((e) => e.version)
          expect(versions).toEqual(Array.from({ length: 32 }, (_, i) => i + 1))
        }
      }))

    it.scoped("every event links to the hash before it, from the head it found; both verifications pass", () =>
      Effect.gen(function* () {
        const log = yield* EventLog
        const before = yield* log.head
        const s = freshStream()
        yield* log.append(s, [created("h1"), created("h2")], options("no_stream"))
        yield* log.append(freshStream(), [created("h3")], options("any"))
        yield* log.append(s, [created("h4")], options(2))
        const stored = yield* allAfter(before.position)
        expect(Buffer.from(stored[0]!.prevHash)).toEqual(Buffer.from(before.hash))
        for (let i = 1; i < stored.length; i++) {
          expect(Buffer.from(stored[i]!.prevHash)).toEqual(Buffer.from(stored[i - 1]!.hash))
        }
        const after = yield* log.head
        expect(after.position).toBe(before.position + 4)
        expect(Buffer.from(after.hash)).toEqual(Buffer.from(stored[3]!.hash))
        // The links as verify reads them are the stored events' canonical encodings.
        const links = yield* log.readLinks(before.position, 10)
        expect(links).toEqual(stored.map((e) => ({
          position: e.position,
          canonical: canonicalEnvelope(e),
          prevHash: Buffer.from(e.prevHash).toString("hex"),
          hash: Buffer.from(e.hash).toString("hex")
        })))
        expect(yield* log.checkChain(0, after.position)).toBeUndefined()
        expect(yield* Verify.verify()).toMatchObject({ ok: true, count: after.position })
        expect(yield* Verify.verify({ independent: true })).toMatchObject({ ok: true, count: after.position })
      }))

    it.scoped("an event reads back as appended: payload, type, meta, workspace, id", () =>
      Effect.gen(function* () {
        const log = yield* EventLog
        const s = freshStream()
        const workspaceId = uuidv7()
        const id = uuidv7()
        const event = created("read back")
        yield* log.append(s, [event], options("no_stream", { workspaceId, ids: [id] }))
        const [stored] = yield* log.readStream(s)
        expect(stored).toMatchObject({ id, stream: s, version: 1, workspaceId, type: "WorkspaceCreated" })
        expect(stored!.event).toEqual(event)
        expect(stored!.meta).toEqual(meta)
        expect(stored!.dataJson).toBe(jsonbText(encodeEvent(event).data))
      }))

    it.scoped("caller ids: an append whose ids are stored stores nothing again and answers what it stored", () =>
      Effect.gen(function* () {
        const log = yield* EventLog
        const s = freshStream()
        const ids = [uuidv7(), uuidv7()]
        const first = yield* log.append(s, [created("once-1"), created("once-2")], options("no_stream", { ids }))
        // The same append again (its caller was told Unavailable), even after the stream moved on, and with "any".
        expect(yield* log.append(s, [created("once-1"), created("once-2")], options("no_stream", { ids }))).toEqual(first)
        yield* log.append(s, [created("other")], options(2))
        const { position: head } = yield* log.head
        expect(yield* log.append(s, [created("once-1"), created("once-2")], options("no_stream", { ids }))).toEqual(first)
        expect(yield* log.append(s, [created("once-1"), created("once-2")], options("any", { ids }))).toEqual(first)
        expect((yield* log.head).position).toBe(head)
        const stored = yield* log.readStream(s)
        expect(names(stored)).toEqual(["once-1", "once-2", "other"])
        expect(stored.slice(0, 2).map((e) => e.id)).toEqual(ids)
      }))

    it.scoped("caller ids are refused when only some are stored, or when they are not one per event", () =>
      Effect.gen(function* () {
        const log = yield* EventLog
        const s = freshStream()
        const stored = uuidv7()
        yield* log.append(s, [created("first")], options("no_stream", { ids: [stored] }))
        const { position: head } = yield* log.head
        expect(yield* failure(log.append(s, [created("x"), created("y")], options("any", { ids: [uuidv7(), stored] }))))
          .toMatch(REJECTED)
        expect(yield* failure(log.append(s, [created("x"), created("y")], options("any", { ids: [uuidv7()] }))))
          .toMatch(REJECTED)
        expect((yield* log.head).position).toBe(head)
      }))

    it.scoped("a caller id or workspace id that is not a lowercase UUID is refused (Rejected, not Unavailable) and fails alone", () =>
      Effect.gen(function* () {
        const log = yield* EventLog
        const { position: head } = yield* log.head
        const bad = [
          { ids: ["not-a-uuid"] },
          { ids: [uuidv7().toUpperCase()] },
          { workspaceId: "not-a-uuid" },
          { workspaceId: uuidv7().toUpperCase() }
        ]
        for (const more of bad) {
          // Beside a good append, which a bad one must not take down with it.
          const [refused, good] = yield* Effect.all([
            failure(log.append(freshStream(), [created("bad")], options("any", more))),
            Effect.either(log.append(freshStream(), [created("good")], options("any")))
          ], { concurrency: "unbounded" })
          expect(refused, JSON.stringify(more)).toMatch(REJECTED)
          expect(Either.isRight(good), JSON.stringify(more)).toBe(true)
        }
        expect((yield* log.head).position).toBe(head + bad.length)
      }))

    it.scoped("refuses an append with no events, or a stream name or payload Postgres cannot store", () =>
      Effect.gen(function* () {
        const log = yield* EventLog
        const { position: head } = yield* log.head
        expect(yield* failure(log.append(freshStream(), [], options("any")))).toMatch(REJECTED)
        expect(yield* failure(log.append("nul\u0000stream", [created("x")], options("any")))).toMatch(REJECTED)
        expect(yield* failure(log.append(freshStream(), [created("nul\u0000name")], options("any")))).toMatch(REJECTED)
        expect((yield* log.head).position).toBe(head)
      }))

    it.scoped("reads from a position in pages, and a stream from a version", () =>
      Effect.gen(function* () {
        const log = yield* EventLog
        const { position: head } = yield* log.head
        const s = freshStream()
        yield* log.append(s, [created("r1"), created("r2"), created("r3")], options("no_stream"))
        yield* log.append(freshStream(), [created("r4")], options("any"))
        yield* log.append(s, [created("r5")], options(3))
        expect(names(yield* log.readAll(head, 2))).toEqual(["r1", "r2"])
        expect(names(yield* log.readAll(head + 2, 2))).toEqual(["r3", "r4"])
        expect(names(yield* log.readAll(head + 4, 100))).toEqual(["r5"])
        expect(yield* log.readAll(head + 5, 100)).toEqual([])
        expect(names(yield* log.readStream(s, 2))).toEqual(["r3", "r5"])
        expect((yield* log.readStream(s, 2)).map((e) => e.version)).toEqual([3, 4])
        expect(yield* log.readStream(freshStream())).toEqual([])
      }))

    it.scoped("subscribe catches up from a position, then sees each new event once, in position order", () =>
      Effect.gen(function* () {
        const log = yield* EventLog
        const { position: head } = yield* log.head
        const s = freshStream()
        yield* log.append(s, [created("past-1"), created("past-2")], options("no_stream"))
        const seen = yield* log.subscribe(head).pipe(Stream.take(6), Stream.runCollect, Effect.fork)
        // Appends while the subscriber waits, one of them from another stream, one of them refused.
        yield* Effect.sleep("50 millis")
        yield* log.append(s, [created("new-1")], options(2))
        yield* Effect.either(log.append(s, [created("conflict")], options(1)))
        yield* log.append(freshStream(), [created("new-2"), created("new-3")], options("any"))
        yield* Effect.sleep("50 millis")
        yield* log.append(s, [created("new-4")], options(3))
        const events = Chunk.toReadonlyArray(yield* Fiber.join(seen).pipe(Effect.timeout("10 seconds")))
        expect(names(events)).toEqual(["past-1", "past-2", "new-1", "new-2", "new-3", "new-4"])
        expect(events.map((e) => e.position)).toEqual([1, 2, 3, 4, 5, 6].map((i) => head + i))
      }))

    it.scoped("a conflicting request alone fails among concurrent appends to one stream", () =>
      Effect.gen(function* () {
        const log = yield* EventLog
        const s = freshStream()
        // Ten writers all expecting an empty stream: exactly one wins.
        const results = yield* Effect.forEach(
          Array.from({ length: 10 }, (_, i) => i),
          (i) => Effect.either(log.append(s, [created(`race-${i}`)], options("no_stream"))),
          { concurrency: "unbounded" }
        )
        const won = results.filter(Either.isRight)
        expect(won).toHaveLength(1)
        for (const r of results.filter(Either.isLeft)) expect(r.left).toMatchObject({ _tag: "VersionConflict", actual: 1 })
        expect(yield* log.readStream(s)).toHaveLength(1)
      }))
  })
