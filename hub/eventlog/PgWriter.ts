/**
 * The append writer: one per process, taking the queued appends in batches and committing each batch in one
 * transaction (the common case without an Effect, `PgWriterFast`; every other case in `PgAppendTransaction`),
 * answering every caller with what really happened — also when a COMMIT's reply was lost (see `PgWriterRecovery`).
 * Its queue is bounded, its connection has timeouts, so a stalled database fails appends as Unavailable instead of
 * hanging them.
 */
import type { PgClient } from "@effect/sql-pg"
import { Duration, Effect, Either, PubSub, Runtime, type Scope } from "effect"
import { type AppendOptions, type AppendResult, EventLogError, type VersionConflict } from "../../core/EventLog.ts"
import * as AppendBatch from "../../core/AppendBatch.ts"
import type { Event } from "../../core/Events.ts"
import { uuidv7 } from "../../core/Ids.ts"
import type { Projection } from "../../core/Projection.ts"
import * as Transaction from "./PgAppendTransaction.ts"
import type { Outcome, Pending } from "./PgAppendTransaction.ts"
import * as PgWriterConnection from "./PgWriterConnection.ts"
import type { WriterConnection } from "./PgWriterConnection.ts"
import * as PgWriterHead from "./PgWriterHead.ts"
import { NOTIFY_CHANNEL } from "./PgAppendStatements.ts"
import * as PgNotifyPacer from "./PgNotifyPacer.ts"
import { type FastResult, tryFast } from "./PgWriterFast.ts"
import * as Recovery from "./PgWriterRecovery.ts"
import type { ProjectionSql } from "../../core/ProjectionSql.ts"

/** Options of the writer. */
export interface PgWriterOptions {
  /** Projections run inside every append transaction. */
  readonly inline?: ReadonlyArray<Projection<ProjectionSql>>
  /** Most append requests committed in one transaction (default 512). */
  readonly maxBatch?: number
  /**
   * Longest a statement of the writer may run, lock waits included (default 15 s); past it the append fails as
   * Unavailable instead of hanging. The writer's client gives up on a server that does not answer at all 2 s later.
   */
  readonly statementTimeout?: Duration.DurationInput
  /** Most append requests waiting for the writer (default 10,000); past it an append fails at once as Unavailable. */
  readonly maxQueued?: number
  /** Told of each batch the writer takes: its append requests and the requests left waiting (metrics; must not throw). */
  readonly onBatch?: (requests: number, queued: number) => void
  /**
   * At most one NOTIFY of the writer's commits per this interval (default 50 ms; 0: one per commit): other processes'
   * subscribers learn of a commit within about this long (see `PgNotifyPacer`).
   */
  readonly notifyPace?: Duration.DurationInput
}

/** A running writer. */
export interface PgWriter {
  /** Appends events to one stream atomically (see `EventLog.append`). */
  readonly append: (
    stream: string,
    events: ReadonlyArray<Event>,
    options: AppendOptions
  ) => Effect.Effect<AppendResult, VersionConflict | EventLogError>
  /** The head position after each commit of this writer, for subscribers in this process. */
  readonly committed: PubSub.PubSub<number>
}

const queueFull = new EventLogError({ reason: "Unavailable", message: "audit log unavailable: writer queue full" })

const closedError = new EventLogError({ reason: "Unavailable", message: "event log closed" })

/** Answers a caller with its outcome. */
const complete = (p: Pending, outcome: Outcome) =>
  Either.match(outcome, {
    onLeft: (error) => p.resume(Effect.fail(error)),
    onRight: (result) => p.resume(Effect.succeed(result))
  })

/**
 * Commits a batch and answers its callers. A batch whose COMMIT reply was lost is never run blind again: the next
 * attempts look its event ids up under the append lock and answer each caller with what really happened.
 */
const writeBatch = (
  ctx: Transaction.AppendContext,
  committed: PubSub.PubSub<number>,
  batch: ReadonlyArray<Pending>
): Effect.Effect<void> =>
  Effect.gen(function* () {
    for (let n = 0;; n++) {
      const result = yield* Effect.either(Transaction.attempt(ctx, batch))
      if (Either.isRight(result)) {
        batch.forEach((p, i) => complete(p, result.right.outcomes[i]!))
        return yield* PubSub.publish(committed, result.right.head)
      }
      const error = result.left
      // Whatever went wrong, the head may have moved: the next attempt reads it under the lock.
      ctx.head.forget()
      if (Recovery.classify(error) === "unknown") for (const p of batch) p.unknown = true
      if (n < Recovery.RECOVERY_DELAYS.length && batch.some((p) => p.unknown)) {
        yield* Effect.sleep(Recovery.RECOVERY_DELAYS[n]!)
        continue
      }
      for (const p of batch) p.resume(Effect.fail(p.unknown ? Recovery.outcomeUnknown(error) : Transaction.failureOf(error)))
      return
    }
  }).pipe(
    // A defect (a bug) fails the batch's callers rather than the writer.
    Effect.catchAllDefect((defect) =>
      Effect.sync(() => {
        ctx.head.forget()
        for (const p of batch) p.resume(Effect.fail(p.unknown ? Recovery.outcomeUnknown(defect) : Transaction.unavailable(defect)))
      })
    ),
    // No stack trace: capturing one cost ~70 µs per batch under tsx (source maps), as much as the rest of the client side.
    Effect.withSpan("EventLog.writeBatch", { attributes: { requests: batch.length }, captureStackTrace: false })
  )

/**
 * Announces `position` with NOTIFY in a transaction of its own that writes nothing, so it waits for no fsync; `done`
 * with the error, if any.
 */
const sendAnnouncement = (conn: WriterConnection, position: number, done: (error: Error | null) => void) => {
  conn.pipeline.addRaw("begin")
  conn.pipeline.addRaw("set local synchronous_commit = off")
  conn.pipeline.addRaw(`select pg_notify('${NOTIFY_CHANNEL}', '${position}')`)
  conn.pipeline.addRaw("commit")
  conn.pipeline.sendWith(done)
}

/** The writer's queue as an append sees it. */
interface Queue {
  /** Queues `request` (and wakes the writer), or says why not: the writer is closed, or its queue is full. */
  readonly offer: (request: Pending) => EventLogError | undefined
  /** Takes `request` out of the queue if it is still there (not in a batch yet). */
  readonly withdraw: (request: Pending) => void
}

/**
 * An append through the writer's queue: checked and encoded once, its ids drawn once, its caller resumed once with what
 * happened. No span per append: an `Effect.fn` span costs ~20 µs per call (measured), as much as the rest of an
 * append's client-side work. Each batch is one span, "EventLog.writeBatch", with its request count.
 */
const appendThrough = (
  queue: Queue,
  stream: string,
  events: ReadonlyArray<Event>,
  options: AppendOptions
): Effect.Effect<AppendResult, VersionConflict | EventLogError> =>
  Effect.suspend(() => {
    const encoded = AppendBatch.encode(stream, events, options)
    if (Either.isLeft(encoded)) return Effect.fail(encoded.left)
    const { types, dataJson, metaJson } = encoded.right
    return Effect.async<AppendResult, VersionConflict | EventLogError>((resume) => {
      let done = false
      const request: Pending = {
        stream,
        // Drawn once, before any attempt: a COMMIT whose reply is lost is resolved by looking these up.
        ids: options.ids ?? events.map(() => uuidv7()),
        callerIds: options.ids !== undefined,
        unknown: false,
        types,
        dataJson,
        events,
        expected: options.expectedVersion,
        workspaceId: options.workspaceId,
        meta: options.meta,
        metaJson,
        resume: (outcome) => {
          if (done) return
          done = true
          resume(outcome)
        }
      }
      const refused = queue.offer(request)
      if (refused !== undefined) return resume(Effect.fail(refused))
      // An interrupted caller leaves the queue if its request is not in a batch yet; once it is, it commits anyway.
      return Effect.sync(() => {
        done = true
        queue.withdraw(request)
      })
    })
  })

/** Starts the writer; it and its connection live as long as the scope, which waits for a batch in flight. */
export const make = (options: PgWriterOptions, config: PgClient.PgClientConfig): Effect.Effect<PgWriter, never, Scope.Scope> =>
  Effect.gen(function* () {
    const inline = options.inline ?? []
    const maxBatch = options.maxBatch ?? 512
    const maxQueued = options.maxQueued ?? 10_000
    const connector = yield* PgWriterConnection.make(config, Duration.toMillis(options.statementTimeout ?? "15 seconds"))
    const ctx: Transaction.AppendContext = {
      connector,
      head: PgWriterHead.make(),
      inline,
      pacing: { notify: true }
    }
    const pacer = PgNotifyPacer.make(Duration.toMillis(options.notifyPace ?? "50 millis"))
    // Requests wait in a plain array and each caller waits in its own `Effect.async`: a Queue offer and a Deferred per
    // append cost ~30 µs of scheduling (measured: 64 fibers appending into an instant writer), the array ~3 µs, and
    // every microsecond here is spent while the database waits for the next batch.
    let queued: Array<Pending> = []
    let closed = false
    const takeBatch = (): Array<Pending> => {
      if (queued.length <= maxBatch) {
        const batch = queued
        queued = []
        return batch
      }
      return queued.splice(0, maxBatch)
    }
    // Wakes subscribers in this process the moment the writer commits, without a round trip through Postgres.
    const committed = yield* Effect.acquireRelease(PubSub.sliding<number>(1), PubSub.shutdown)
    const runtime = yield* Effect.runtime<never>()

    // One batch at a time. The common case runs without an Effect (`PgWriterFast`); anything else, and any failure of
    // it, runs `writeBatch` in a fiber of its own. When a batch ends, the requests queued meanwhile are the next batch
    // at once; a request that finds the writer idle wakes it in a microtask, after the fibers scheduled before it
    // (typically the other callers of the last batch) have queued theirs too.
    let busy = false
    let scheduled = false
    let idle: Array<() => void> = []
    const finish = () => {
      busy = false
      if (!closed && queued.length > 0) return pump()
      if (!closed && pacer.owed()) pacer.arm(announce)
      const waiting = idle
      idle = []
      for (const resume of waiting) resume()
    }
    const ended = (notify: boolean) => {
      pacer.ended(notify)
      finish()
    }
    const slow = (effect: Effect.Effect<void>, notify: boolean) =>
      // A batch is never cut short: once its commit is sent its outcome is only known from the reply, and a caller told
      // "failed" for an event that committed would append it again. Shutdown waits for it; queued requests fail as closed.
      Runtime.runFork(runtime)(Effect.uninterruptible(effect)).addObserver(() => ended(notify))
    // The head announced by the writer itself, idle after commits that were not announced: in a transaction of its own
    // that writes nothing, so it waits for no fsync. A failure is left to the subscribers' poll.
    const announce = () => {
      if (busy || closed || !pacer.owed()) return
      const conn = connector.current()
      if (conn === undefined) return pacer.sent()
      busy = true
      sendAnnouncement(conn, ctx.head.head()?.position ?? 0, (error) => {
        pacer.sent()
        if (error === null) return finish()
        Runtime.runFork(runtime)(connector.abandon(conn, error)).addObserver(finish)
      })
    }
    const fastFailed = (batch: ReadonlyArray<Pending>, result: Extract<FastResult, { _tag: "Failed" }>) =>
      Effect.gen(function* () {
        yield* connector.abandon(result.conn, result.error)
        // Its commit went in the same message: unless the server answered with an error, it may have committed.
        if (!Recovery.isServerError(result.error)) for (const p of batch) p.unknown = true
        else if (result.error.code === "CN004") ctx.head.pause()
        ctx.head.forget()
        yield* writeBatch(ctx, committed, batch)
      })
    const pump = (): void => {
      scheduled = false
      if (busy || closed || queued.length === 0) return
      busy = true
      const batch = takeBatch()
      const notify = ctx.pacing.notify = pacer.start()
      // An observer (the hub's metrics) that throws must not stop the writer with a batch taken off the queue.
      try {
        options.onBatch?.(batch.length, queued.length)
      } catch {
        // Metrics are best effort; the batch is written regardless.
      }
      const fast = tryFast(ctx, runtime, batch, (result) => {
        if (result._tag === "Failed") return slow(fastFailed(batch, result), notify)
        batch.forEach((p, i) => complete(p, result.outcomes[i]!))
        committed.unsafeOffer(result.head)
        ended(notify)
      })
      if (!fast) slow(writeBatch(ctx, committed, batch), notify)
    }
    const wake = () => {
      if (busy || scheduled) return
      scheduled = true
      queueMicrotask(pump)
    }
    yield* Effect.addFinalizer(() =>
      Effect.async<void>((resume) => {
        closed = true
        pacer.close()
        const waiting = queued
        queued = []
        for (const p of waiting) p.resume(Effect.fail(closedError))
        if (busy) idle.push(() => resume(Effect.void))
        else resume(Effect.void)
      })
    )

    const queue: Queue = {
      offer: (request) => {
        if (closed) return closedError
        // Bounded: a stalled database must not let appends pile up in memory; the callers refuse or spool instead.
        if (queued.length >= maxQueued) return queueFull
        queued.push(request)
        wake()
        return undefined
      },
      withdraw: (request) => {
        const i = queued.indexOf(request)
        if (i >= 0) queued.splice(i, 1)
      }
    }
    const append: PgWriter["append"] = (stream, events, options) => appendThrough(queue, stream, events, options)

    return { append, committed }
  })
