/**
 * The writer keeps a second batch in flight behind the first (node-postgres in pipeline mode): computed from the head
 * the first will leave, sent before the first is answered. While the append lock is held elsewhere, two appends are
 * two batches on the wire, and both commit, in order, once the lock is free. When the first fails in Postgres, the
 * one behind it (computed from a head that never came) fails with it, and both go the slow way in the order taken:
 * every request answered with what is stored, nothing stored twice, the chain intact.
 */
import { PgClient } from "@effect/sql-pg"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Exit, Fiber, Layer, Redacted } from "effect"
import Pg from "pg"
import { verify } from "../../../audit/Verify.ts"
import { type AppendOptions, EventLog } from "../../../core/EventLog.ts"
import { EventMeta, WorkspaceCreated } from "../../../core/Events.ts"
import { uuidv7 } from "../../../core/Ids.ts"
import type { Projection } from "../../../core/Projection.ts"
import { ProjectionSql } from "../../../core/ProjectionSql.ts"
import * as Migrations from "../../../hub/db/Migrations.ts"
import { APPEND_LOCK_KEY } from "../../../hub/eventlog/PgAppendStatements.ts"
import * as PgEventLog from "../../../hub/eventlog/PgEventLog.ts"
import * as StreamHeads from "../../../hub/readmodels/StreamHeads.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"

const meta = new EventMeta({ actor: { kind: "system" } })
const opts: AppendOptions = { expectedVersion: "any", workspaceId: null, meta }
const created = (name: string) => new WorkspaceCreated({ workspaceId: uuidv7() as never, name })

/** An inline projection whose statement Postgres refuses (division by zero) for a workspace named "boom…". */
const boom: Projection<ProjectionSql> = {
  name: "boom",
  mode: "inline",
  apply: (events) =>
    events.some((e) => e.event._tag === "WorkspaceCreated" && e.event.name.startsWith("boom"))
      ? Effect.flatMap(ProjectionSql, (q) => q.execute(`select 1 / 0`, []))
      : Effect.void,
  reset: Effect.void
}

/**
 * A log on a fresh database whose writer reports each batch it takes; `holdLock` takes the append lock from another
 * connection until `release`.
 */
const setUp = Effect.gen(function*() {
  const url = yield* TestDatabase.makeTestDatabaseUrl
  const batches: Array<number> = []
  const layer = PgEventLog.layer({
    inline: [StreamHeads.projection, boom],
    onBatch: (requests) => void batches.push(requests)
  }).pipe(
    Layer.provideMerge(Layer.effectDiscard(Migrations.run)),
    Layer.provideMerge(PgClient.layer({ url: Redacted.make(url), maxConnections: 4 }))
  )
  const context = yield* Layer.build(layer)
  const holder = yield* Effect.acquireRelease(
    Effect.promise(async () => {
      const client = new Pg.Client({ connectionString: url })
      await client.connect()
      return client
    }),
    (client) => Effect.promise(() => client.end().catch(() => undefined))
  )
  const holdLock = Effect.promise(() => holder.query(`begin; select pg_advisory_xact_lock(${APPEND_LOCK_KEY})`))
  const release = Effect.promise(() => holder.query("commit"))
  return { context, batches, holdLock, release }
})

/** Waits until `check` holds (at most 10 s). */
const until = (check: () => boolean) =>
  Effect.gen(function*() {
    const deadline = Date.now() + 10_000
    while (!check() && Date.now() < deadline) yield* Effect.sleep("10 millis")
    expect(check()).toBe(true)
  })

describe("PgWriter pipelining", () => {
  it.scopedLive("a second batch goes out behind the first before the first is answered, and both commit in order", () =>
    Effect.gen(function*() {
      const { batches, context, holdLock, release } = yield* setUp
      const log = EventLog.pipe(Effect.provide(context))
      const append = (name: string) => Effect.flatMap(log, (l) => l.append(`p-${name}`, [created(name)], opts))
      // The writer learns the head (its first append reads it under the lock), then the lock is taken elsewhere.
      yield* append("first")
      batches.length = 0
      yield* holdLock
      const a = yield* Effect.fork(append("a"))
      yield* until(() => batches.length === 1)
      const b = yield* Effect.fork(append("b"))
      // Without pipelining the writer waits for the first batch's answer before it takes the second.
      yield* until(() => batches.length === 2)
      yield* Effect.sleep("200 millis")
      expect(a.unsafePoll()).toBeNull()
      expect(b.unsafePoll()).toBeNull()
      yield* release
      const ra = yield* Fiber.join(a)
      const rb = yield* Fiber.join(b)
      expect(rb.firstPosition).toBe(ra.lastPosition + 1)
      expect(batches).toEqual([1, 1])
      const events = yield* Effect.flatMap(log, (l) => l.readAll(0, 100))
      expect(events.map((e) => e.stream)).toEqual(["p-first", "p-a", "p-b"])
      expect(yield* verify().pipe(Effect.provide(context))).toMatchObject({ ok: true, count: 3 })
    }))

  it.scopedLive("a batch Postgres refuses takes the one sent behind it to the slow path: each told what is stored, once", () =>
    Effect.gen(function*() {
      const { batches, context, holdLock, release } = yield* setUp
      const log = EventLog.pipe(Effect.provide(context))
      const append = (stream: string, name: string) => Effect.flatMap(log, (l) => l.append(stream, [created(name)], opts))
      yield* append("p-first", "first")
      batches.length = 0
      yield* holdLock
      // The first batch fails in Postgres (its projection's statement is refused: the whole message fails)...
      const bad = yield* Effect.fork(append("p-bad", "boom"))
      yield* until(() => batches.length === 1)
      // ...and the second, sent behind it, was computed from the head the first would have left.
      const good = yield* Effect.fork(append("p-good", "good"))
      yield* until(() => batches.length === 2)
      yield* release
      const refused = yield* Effect.exit(Fiber.join(bad))
      const stored = yield* Fiber.join(good)
      expect(Exit.isFailure(refused)).toBe(true)
      expect(stored).toEqual({ firstPosition: 2, lastPosition: 2, version: 1 })
      const events = yield* Effect.flatMap(log, (l) => l.readAll(0, 100))
      expect(events.map((e) => (e.event as WorkspaceCreated).name)).toEqual(["first", "good"])
      expect(yield* verify().pipe(Effect.provide(context))).toMatchObject({ ok: true, count: 2 })
      // The writer goes on from there.
      const after = yield* Effect.either(append("p-good", "good-2"))
      expect(Either.isRight(after) && after.right).toEqual({ firstPosition: 3, lastPosition: 3, version: 2 })
    }))

  it.scopedLive("16 callers appending 25 times each with pipelining: every version exact, the chain intact", () =>
    Effect.gen(function*() {
      const { context } = yield* setUp
      const log = yield* EventLog.pipe(Effect.provide(context))
      yield* Effect.forEach(Array.from({ length: 16 }, (_, c) => c), (c) =>
        Effect.forEach(Array.from({ length: 25 }, (_, i) => i), (i) =>
          Effect.map(
            log.append(`caller-${c}`, [created(`c${c}-${i}`)], { ...opts, expectedVersion: i }),
            (result) => expect(result.version).toBe(i + 1)
          ), { discard: true }), { concurrency: "unbounded", discard: true })
      expect(yield* verify().pipe(Effect.provide(context))).toMatchObject({ ok: true, count: 400 })
    }))
})
