/**
 * The exporter: reads the log in position order from where its cursor stands, formats every event (one of an unknown
 * type raw, never skipped), writes them to the sink in batches, and moves the cursor past a batch only once the sink
 * confirmed it. So a crash anywhere costs at most the batches sent but not yet confirmed, sent again on the next run:
 * at least once, duplicates recognisable by event id. A cursor records the hash at its position too, and a log that no
 * longer holds that hash there (rewritten, cut, or another hub's) is refused instead of exported from a wrong place.
 */
import { Chunk, Duration, Effect, Option, Ref, Schema, Stream } from "effect"
import { EventLog, pagesAhead, type StoredEvent } from "../../core/EventLog.ts"
import { AuditRead, EventMeta } from "../../core/Events.ts"
import { uuidv7 } from "../../core/Ids.ts"
import * as Cursor from "./Cursor.ts"
import { type Format, record, syslogRecord } from "./Format.ts"
import type { FormatContext } from "./FormatContext.ts"
import { Sink } from "./Sink.ts"
import { hex } from "./Summary.ts"

/** The log does not hold, at the cursor's position, the event the cursor was written after. */
export class ExportError extends Schema.TaggedError<ExportError>()("ExportError", {
  reason: Schema.Literal("CursorMismatch"),
  position: Schema.Number,
  message: Schema.String
}) {}

/** What one export run does. */
export interface ExportOptions {
  readonly format: Format
  /** `syslog`: every record as an RFC 5424 message (a syslog sink); `line`: the format's own line. */
  readonly framing: "line" | "syslog"
  readonly context: FormatContext
  /** The cursor file; without one the run starts at the beginning and remembers nothing. */
  readonly cursor: string | undefined
  /** Go on with events committed later, until interrupted; otherwise stop at the head as it was at the start. */
  readonly follow: boolean
  /** Events per batch: one sink write and one confirmation, then one cursor write. */
  readonly batchSize: number
  /** Called after every confirmed batch (progress display). */
  readonly onBatch?: (progress: Progress) => Effect.Effect<void>
}

/** What a run has delivered so far: confirmed by the sink and, with a cursor file, recorded in it. */
export interface Progress {
  readonly count: number
  /** The first position this run delivered. */
  readonly fromPosition: number | undefined
  /** The last position delivered: where the cursor stands. */
  readonly toPosition: number | undefined
}

/** Nothing delivered yet. */
export const initial: Progress = { count: 0, fromPosition: undefined, toPosition: undefined }

/**
 * The position to export after: 0 without a cursor file or with none yet; else the cursor's position once the log is
 * checked to hold the cursor's hash there.
 */
export const resume = Effect.fn("Exporter.resume")(function*(path: string | undefined) {
  if (path === undefined) return 0
  const found = yield* Cursor.read(path)
  if (Option.isNone(found)) return 0
  const cursor = found.value
  if (cursor.position === 0) return 0
  const log = yield* EventLog
  const [link] = yield* log.readLinks(cursor.position - 1, 1)
  const mismatch = (why: string) =>
    new ExportError({
      reason: "CursorMismatch",
      position: cursor.position,
      message: `cursor file ${path} stands at position ${cursor.position}, but ${why}: the log was rewritten or cut, or ` +
        `the cursor belongs to another hub's log. Nothing was exported; check the log (connect audit verify) and ` +
        `delete the cursor file only to export everything again`
    })
  if (link === undefined || link.position !== cursor.position) {
    const head = yield* log.head
    return yield* mismatch(`the log ends at position ${head.position}`)
  }
  if (link.hash !== cursor.hash) return yield* mismatch(`the log holds another event there (hash ${link.hash.slice(0, 16)}…, the cursor has ${cursor.hash.slice(0, 16)}…)`)
  return cursor.position
})

/** The events after `after` as batches: up to the head at the start, or forever with `follow`. */
const batches = (after: number, options: ExportOptions) =>
  Stream.unwrap(
    Effect.gen(function*() {
      const log = yield* EventLog
      if (options.follow) {
        // A quiet log still gets what it has delivered within a quarter of a second.
        return log.subscribe(after).pipe(
          Stream.groupedWithin(options.batchSize, Duration.millis(250)),
          Stream.map(Chunk.toReadonlyArray)
        )
      }
      // The head as the run starts: events committed during the run are left to the next one, so a run ends (and the
      // AuditRead it appends at its end is exported by the next run, not chased by this one).
      const head = (yield* log.head).position
      if (head <= after) return Stream.empty
      return pagesAhead(log.readAll, options.batchSize, after).pipe(
        Stream.takeUntil((page) => page[page.length - 1]!.position >= head),
        Stream.map((page) => page.filter((e) => e.position <= head))
      )
    })
  )

/**
 * Exports every event after `after` (see {@link resume}) to the sink, batch by batch: written, confirmed, then the
 * cursor written; `progress` holds what was delivered, also when the run fails or is interrupted midway.
 */
export const run = Effect.fn("Exporter.run")(function*(after: number, options: ExportOptions, progress: Ref.Ref<Progress>) {
  const sink = yield* Sink
  const toRecord = options.framing === "syslog"
    ? (e: StoredEvent) => syslogRecord(options.format, e, options.context)
    : (e: StoredEvent) => record(options.format, e, options.context)
  let next = after + 1
  const deliver = (batch: ReadonlyArray<StoredEvent>) =>
    Effect.gen(function*() {
      if (batch.length === 0) return
      // The log is gap-free and read in position order; anything else is a bug that would break completeness.
      if (batch[0]!.position !== next) return yield* Effect.dieMessage(`export read position ${batch[0]!.position}, expected ${next}`)
      next = batch[batch.length - 1]!.position + 1
      yield* sink.write(batch.map(toRecord))
      yield* sink.confirm
      const last = batch[batch.length - 1]!
      // Interrupted here, the cursor and the progress would disagree: both happen or neither.
      const delivered = yield* Effect.uninterruptible(
        Effect.gen(function*() {
          if (options.cursor !== undefined) yield* Cursor.write(options.cursor, { position: last.position, hash: hex(last.hash) })
          return yield* Ref.updateAndGet(progress, (p) => ({
            count: p.count + batch.length,
            fromPosition: p.fromPosition ?? batch[0]!.position,
            toPosition: last.position
          }))
        })
      )
      if (options.onBatch) yield* options.onBatch(delivered)
    })
  yield* batches(after, options).pipe(Stream.runForEach(deliver))
})

/**
 * The `AuditRead` an export run appends when it ends: what it delivered and how (format, sink kind; never a target's
 * credentials). One per run, at its end: only then are the count and range known, and a follower that recorded as it
 * went would export its own records forever.
 */
export const auditRead = (filters: Record<string, string>, progress: Progress): AuditRead =>
  new AuditRead({
    kind: "export",
    filters,
    count: progress.count,
    ...(progress.fromPosition === undefined ? {} : { fromPosition: progress.fromPosition }),
    ...(progress.toPosition === undefined ? {} : { toPosition: progress.toPosition })
  })

/** Appends the run's `AuditRead` on its own stream, the local admin as its actor; returns its position. */
export const recordRead = Effect.fn("Exporter.recordRead")(function*(filters: Record<string, string>, progress: Progress) {
  const log = yield* EventLog
  const appended = yield* log.append(`auditread-${uuidv7()}`, [auditRead(filters, progress)], {
    expectedVersion: "no_stream",
    workspaceId: null,
    meta: new EventMeta({ actor: { kind: "admin" } })
  })
  return appended.lastPosition
})
