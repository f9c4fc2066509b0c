/**
 * The pure part of an append: expected versions, positions, versions and chain hashes given from a cursor, which a
 * batch advances request by request; and the checks a request passes before it joins a batch.
 */
import { createHash } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import * as AppendBatch from "../../core/AppendBatch.ts"
import type { AppendOptions, ExpectedVersion, StoredEvent } from "../../core/EventLog.ts"
import { type Event, EventMeta, WorkspaceCreated } from "../../core/Events.ts"
import { canonicalEnvelope, GENESIS_HASH } from "../../core/HashChain.ts"
import { uuidv7, WorkspaceId } from "../../core/Ids.ts"

const meta = new EventMeta({ actor: { kind: "system" } })
const at = new Date("2026-03-01T12:00:00.123Z")
const created = (name: string): Event => new WorkspaceCreated({ workspaceId: WorkspaceId.make(uuidv7()), name })
const options = (more: Partial<AppendOptions> = {}): AppendOptions => ({
  expectedVersion: "any",
  workspaceId: null,
  meta,
  ...more
})

/** A request of `names.length` events to `stream`, encoded as a log would. */
const request = (stream: string, expected: ExpectedVersion, ...names: Array<string>): AppendBatch.Request => {
  const events = names.map(created)
  const encoded = Either.getOrThrow(AppendBatch.encode(stream, events, options()))
  return { stream, expected, ids: events.map(() => uuidv7()), ...encoded, workspaceId: null, events, meta }
}

const prepared = (cursor: AppendBatch.Cursor, r: AppendBatch.Request): ReadonlyArray<StoredEvent> =>
  Either.getOrThrow(AppendBatch.prepare(cursor, r))

/** sha256(prev_hash || canonical), as `verify` recomputes it from the stored columns. */
const verifies = (e: StoredEvent) =>
  createHash("sha256").update(e.prevHash).update(canonicalEnvelope(e), "utf8").digest().equals(e.hash)

const emptyLog = () => AppendBatch.cursorAt({ position: 0, hash: GENESIS_HASH }, [], at)

describe("AppendBatch.prepare", () => {
  it("checks the expected version: no_stream on an empty stream, the exact version, or any", () => {
    const cursor = AppendBatch.cursorAt({ position: 10, hash: GENESIS_HASH }, [["s", 2]], at)
    expect(Either.isRight(AppendBatch.prepare(cursor, request("new", "no_stream", "a")))).toBe(true)
    expect(Either.isRight(AppendBatch.prepare(cursor, request("s", 2, "b")))).toBe(true)
    expect(Either.isRight(AppendBatch.prepare(cursor, request("s", "any", "c")))).toBe(true)
    expect(cursor.versions.get("s")).toBe(4)
    expect(cursor.versions.get("new")).toBe(1)
  })

  it("refuses a stale, early or no_stream expectation with the stream's actual version, and leaves the cursor as it was", () => {
    const head = Buffer.alloc(32, 7)
    const cursor = AppendBatch.cursorAt({ position: 10, hash: head }, [["s", 2]], at)
    for (const expected of ["no_stream", 1, 3] as const) {
      const result = AppendBatch.prepare(cursor, request("s", expected, "late"))
      expect(Either.flip(result)).toEqual(Either.right(expect.objectContaining({ _tag: "VersionConflict", stream: "s", expected, actual: 2 })))
    }
    expect(Either.flip(AppendBatch.prepare(cursor, request("other", 1, "x")))).toMatchObject(Either.right({ actual: 0 }))
    expect(cursor).toEqual({ position: 10, prevHash: head, versions: new Map([["s", 2]]), recordedAt: at })
  })

  it("gives the next positions from the head and the next versions of the stream, all recorded at the cursor's time", () => {
    const cursor = AppendBatch.cursorAt({ position: 41, hash: Buffer.alloc(32, 1) }, [["s", 5]], at)
    const r = request("s", 5, "a", "b", "c")
    const stored = prepared(cursor, r)
    expect(stored.map((e) => [e.position, e.version, e.id, e.type, e.dataJson])).toEqual(
      [0, 1, 2].map((i) => [42 + i, 6 + i, r.ids[i], "WorkspaceCreated", r.dataJson[i]])
    )
    expect(stored.every((e) => e.recordedAt === at && e.stream === "s" && e.metaJson === r.metaJson)).toBe(true)
    expect(stored.map((e) => e.event)).toEqual(r.events)
    expect(AppendBatch.resultOf(stored)).toEqual({ firstPosition: 42, lastPosition: 44, version: 8 })
    expect(cursor.position).toBe(44)
  })

  it("chains each event to the one before, from the head's hash, with hashes verify recomputes", () => {
    const cursor = emptyLog()
    const first = prepared(cursor, request("s", "no_stream", "a", "b"))
    const second = prepared(cursor, request("t", "no_stream", "c"))
    const all = [...first, ...second]
    expect(all[0]!.prevHash).toBe(GENESIS_HASH)
    for (let i = 1; i < all.length; i++) expect(all[i]!.prevHash).toBe(all[i - 1]!.hash)
    expect(all.every(verifies)).toBe(true)
    expect(cursor.prevHash).toBe(all[2]!.hash)
    expect(new Set(all.map((e) => Buffer.from(e.hash).toString("hex"))).size).toBe(3)
  })

  it("requests of one batch see each other: versions and the chain continue, a conflict fails only its own", () => {
    const cursor = emptyLog()
    prepared(cursor, request("s", "no_stream", "a"))
    expect(Either.isLeft(AppendBatch.prepare(cursor, request("s", "no_stream", "lost race")))).toBe(true)
    const next = prepared(cursor, request("s", 1, "b"))
    expect(next.map((e) => [e.position, e.version])).toEqual([[2, 2]])
  })

  it("rewind takes back the last prepared request, so the next one gets its positions, versions and link", () => {
    const batch = emptyLog()
    const [a] = prepared(batch, request("s", "no_stream", "a"))
    const failed = prepared(batch, request("s", 1, "b", "c"))
    AppendBatch.rewind(batch, failed)
    expect(batch.position).toBe(1)
    expect(batch.versions.get("s")).toBe(1)
    const after = prepared(batch, request("s", 1, "d"))
    expect(after.map((e) => [e.position, e.version])).toEqual([[2, 2]])
    expect(after[0]!.prevHash).toBe(a!.hash)
    expect(after.every(verifies)).toBe(true)
  })
})

describe("AppendBatch.encode", () => {
  it("encodes types and payloads as jsonb text", () => {
    const event = new WorkspaceCreated({ workspaceId: WorkspaceId.make("0190e3b0-aaaa-7bbb-8ccc-ddddeeeeffff"), name: "w" })
    expect(AppendBatch.encode("s", [event], options())).toEqual(Either.right({
      types: ["WorkspaceCreated"],
      dataJson: [`{"name": "w", "workspaceId": "0190e3b0-aaaa-7bbb-8ccc-ddddeeeeffff"}`],
      metaJson: `{"actor": {"kind": "system"}}`
    }))
  })

  it("refuses no events, a stream name with U+0000, ids not one per event, an id not a lowercase UUID, a payload without exact jsonb text", () => {
    const refusals = [
      AppendBatch.encode("s", [], options()),
      AppendBatch.encode("s\u0000", [created("a")], options()),
      AppendBatch.encode("s", [created("a"), created("b")], options({ ids: [uuidv7()] })),
      AppendBatch.encode("s", [created("a")], options({ ids: ["not-a-uuid"] })),
      AppendBatch.encode("s", [created("a")], options({ ids: [uuidv7().toUpperCase()] })),
      AppendBatch.encode("s", [created("a")], options({ workspaceId: "not-a-uuid" })),
      AppendBatch.encode("s", [created("a")], options({ workspaceId: uuidv7().toUpperCase() })),
      AppendBatch.encode("s", [created("nul\u0000")], options())
    ]
    for (const refused of refusals) expect(Either.flip(refused)).toMatchObject(Either.right({ _tag: "EventLogError", reason: "Rejected" }))
    expect(Either.isRight(AppendBatch.encode("s", [created("a")], options({ ids: [uuidv7()], workspaceId: uuidv7() })))).toBe(true)
  })
})
