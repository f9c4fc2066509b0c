/**
 * The Postgres event log: serialized, hash-chained appends through one group-commit writer fiber per process (see
 * `PgWriter`), position-ordered reads, and subscriptions that catch up by position and wake on LISTEN/NOTIFY or a poll.
 */
import { PgClient } from "@effect/sql-pg"
import { Chunk, Effect, Either, Layer, PubSub, Queue, Schedule, Schema, Stream } from "effect"
import {
  EventLog,
  EventLogError,
  Head,
  type KnownStoredEvent,
  type RawEvent,
  type StoredEvent,
  UnknownEvent
} from "../../core/EventLog.ts"
import { decodeEventEither, EventMeta, UnknownEventType } from "../../core/Events.ts"
import { GENESIS_HASH } from "../../core/HashChain.ts"
import { NOTIFY_CHANNEL, unavailable } from "./PgAppendStatements.ts"
import * as PgChainCheck from "./PgChainCheck.ts"
import * as PgWriter from "./PgWriter.ts"

export { APPEND_LOCK_KEY, NOTIFY_CHANNEL } from "./PgAppendStatements.ts"

/** Events a subscriber reads at a time. */
const SUBSCRIBE_PAGE = 1000

/** Options of the Postgres event log: its writer's, and how often a subscriber polls. */
export interface PgEventLogOptions extends PgWriter.PgWriterOptions {
  /** How often a subscriber polls when no notification arrives (default 1 s). */
  readonly pollInterval?: number
}

const toBuffer = (b: unknown): Uint8Array => (b instanceof Uint8Array ? b : Buffer.from(String(b), "hex"))

const rowToRaw = (row: Record<string, unknown>): RawEvent => ({
  position: Number(row.position),
  id: row.id as string,
  stream: row.stream as string,
  version: Number(row.version),
  workspaceId: (row.workspace_id as string | null) ?? null,
  type: row.type as string,
  dataJson: row.data as string,
  metaJson: row.meta as string,
  recordedAt: new Date(Number(row.recorded_ms)),
  prevHash: toBuffer(row.prev_hash),
  hash: toBuffer(row.hash)
})

const decodeMetaEither = Schema.decodeUnknownEither(EventMeta)

const decodeFailure = (raw: RawEvent, message: string, cause: unknown) =>
  new EventLogError({
    reason: "Decode",
    message: `event at position ${raw.position} (${raw.type}) does not decode: ${message}`,
    cause
  })

/**
 * What a page read does with a type the catalog does not know: pass it on as an `UnknownEvent`, collected into the
 * array (reads and subscriptions, which must go on), or fail (stream reads, which deciders fold).
 */
type OnUnknown = Array<StoredEvent> | "fail"

/**
 * Decodes a stored row through its event's schema into a `StoredEvent`, built on the row's `RawEvent` without a copy
 * (rebuilds decode millions, and a third of their time went to the garbage collector); a bad payload (or an unknown
 * type, when `unknown` is "fail") is an `EventLogError` naming the position. `metaCache` holds the last decoded
 * metadata: consecutive events of one actor share the same meta text, and decoding it again was a fifth of a
 * rebuild's time.
 */
const decodeRow = (
  row: Record<string, unknown>,
  metaCache: { text: string; meta: EventMeta | undefined },
  unknown: OnUnknown
): StoredEvent | EventLogError => {
  const raw = rowToRaw(row)
  let data: unknown
  try {
    data = JSON.parse(raw.dataJson)
  } catch (cause) {
    return decodeFailure(raw, "stored JSON does not parse", cause)
  }
  const decoded = decodeEventEither(raw.type, data)
  let event: StoredEvent["event"]
  if (Either.isRight(decoded)) event = decoded.right
  else if (decoded.left instanceof UnknownEventType && unknown !== "fail") event = new UnknownEvent({ type: raw.type, data })
  else return decodeFailure(raw, decoded.left.message, decoded.left)
  if (metaCache.meta === undefined || metaCache.text !== raw.metaJson) {
    let metaValue: unknown
    try {
      metaValue = JSON.parse(raw.metaJson)
    } catch (cause) {
      return decodeFailure(raw, "stored JSON does not parse", cause)
    }
    const meta = decodeMetaEither(metaValue)
    if (Either.isLeft(meta)) return decodeFailure(raw, `meta: ${meta.left.message}`, meta.left)
    metaCache.text = raw.metaJson
    metaCache.meta = meta.right
  }
  // The raw object becomes the stored event: no copy of its eleven fields per event.
  const stored = raw as { -readonly [K in keyof StoredEvent]: StoredEvent[K] }
  stored.event = event
  stored.meta = metaCache.meta
  if (event._tag === "UnknownEvent" && unknown !== "fail") unknown.push(stored)
  return stored
}

/** Decodes a page of rows in one synchronous pass. */
const decodePage = (
  rows: ReadonlyArray<Record<string, unknown>>,
  unknown: OnUnknown
): Effect.Effect<Array<StoredEvent>, EventLogError> =>
  Effect.suspend(() => {
    const out: Array<StoredEvent> = new Array(rows.length)
    const metaCache = { text: "", meta: undefined as EventMeta | undefined }
    for (let i = 0; i < rows.length; i++) {
      const decoded = decodeRow(rows[i]!, metaCache, unknown)
      if (decoded instanceof EventLogError) return Effect.fail(decoded)
      out[i] = decoded
    }
    return Effect.succeed(out)
  })

// Payloads as text (the text the chain hashes; parsed once by decodeRow) and the time as epoch ms (exact: the writer
// stores whole milliseconds), which is also cheaper to read than a timestamptz.
const SELECT_COLUMNS = `position, id, stream, version, workspace_id, type, data::text as data, meta::text as meta,
  (extract(epoch from recorded_at) * 1000)::bigint as recorded_ms, prev_hash, hash`

/** Builds the Postgres event log; its writer fiber lives as long as the surrounding scope. */
export const make = Effect.fn("PgEventLog.make")(function* (options: PgEventLogOptions = {}) {
  const sql = yield* PgClient.PgClient
  const pollInterval = options.pollInterval ?? 1000
  const writer = yield* PgWriter.make(options, sql.config)
  // Wakes subscribers in this process the moment the writer commits, without a round trip through Postgres.
  const committed = writer.committed

  const readRows = (after: number, limit: number) =>
    sql
      .unsafe<Record<string, unknown>>(
        `select ${SELECT_COLUMNS} from events where position > $1 order by position limit $2`,
        [after, limit]
      )
      .pipe(Effect.mapError(unavailable))

  const readLinks = PgChainCheck.readLinks(sql)
  const checkChain = PgChainCheck.checkChain(sql)

  // Each type the catalog does not know is reported once per log: a follower meets it on every restart, a warning per
  // event would bury everything else.
  const reported = new Set<string>()
  const reportUnknown = (events: ReadonlyArray<StoredEvent>) =>
    Effect.forEach(events, (e) => {
      if (reported.has(e.type)) return Effect.void
      reported.add(e.type)
      return Effect.logWarning(
        `event type ${e.type} (first at position ${e.position}) is not in this build's catalog: passed on undecoded`
      )
    }, { discard: true })

  const readAll = (after: number, limit: number) =>
    Effect.flatMap(readRows(after, limit), (rows) => {
      const unknown: Array<StoredEvent> = []
      return Effect.tap(decodePage(rows, unknown), () => (unknown.length === 0 ? Effect.void : reportUnknown(unknown)))
    }).pipe(Effect.withSpan("EventLog.readAll"))

  const readStream = (stream: string, afterVersion = 0) =>
    sql
      .unsafe<Record<string, unknown>>(
        `select ${SELECT_COLUMNS} from events where stream = $1 and version > $2 order by version`,
        [stream, afterVersion]
      )
      .pipe(
        Effect.mapError(unavailable),
        Effect.flatMap((rows) => decodePage(rows, "fail") as Effect.Effect<Array<KnownStoredEvent>, EventLogError>),
        Effect.withSpan("EventLog.readStream")
      )

  const head = sql
    .unsafe<{ position: number; hash: Uint8Array }>(`select position, hash from events order by position desc limit 1`)
    .pipe(
      Effect.map((rows) =>
        rows.length === 0
          ? new Head({ position: 0, hash: GENESIS_HASH })
          : new Head({ position: Number(rows[0]!.position), hash: toBuffer(rows[0]!.hash) })
      ),
      Effect.mapError(unavailable),
      Effect.withSpan("EventLog.head")
    )

  const subscribe = (after: number): Stream.Stream<StoredEvent, EventLogError> =>
    Stream.unwrapScoped(
      Effect.gen(function* () {
        const wake = yield* Effect.acquireRelease(Queue.sliding<void>(1), Queue.shutdown)
        // Other processes' commits arrive as notifications. LISTEN gives no "subscribed" signal and may drop, so it
        // only shortens the wait: every wake-up (and every poll) re-reads by position.
        yield* sql.listen(NOTIFY_CHANNEL).pipe(
          Stream.runForEach(() => Queue.offer(wake, undefined)),
          Effect.retry(Schedule.spaced("1 second")),
          Effect.ignore,
          Effect.forkScoped
        )
        const local = yield* PubSub.subscribe(committed)
        yield* Queue.take(local).pipe(
          Effect.flatMap(() => Queue.offer(wake, undefined)),
          Effect.forever,
          Effect.forkScoped
        )
        let cursor = after
        // A read shorter than a page reached the head: the next waits for a commit (or the poll) instead of reading
        // again at once, which found nothing after nearly every commit and doubled each subscriber's reads. A commit
        // during the read left its wake-up in the queue, so it is read next.
        let caughtUp = false
        const pull: Effect.Effect<Chunk.Chunk<StoredEvent>, EventLogError> = Effect.gen(function* () {
          while (true) {
            if (caughtUp) yield* Queue.take(wake).pipe(Effect.timeoutOption(pollInterval))
            const events = yield* readAll(cursor, SUBSCRIBE_PAGE)
            caughtUp = events.length < SUBSCRIBE_PAGE
            if (events.length > 0) {
              cursor = events[events.length - 1]!.position
              return Chunk.unsafeFromArray(events)
            }
          }
        })
        return Stream.repeatEffectChunk(pull)
      })
    )

  return EventLog.of({ append: writer.append, readAll, readLinks, checkChain, readStream, subscribe, head })
})

/** The event log as a layer over a PgClient. */
export const layer = (options: PgEventLogOptions = {}): Layer.Layer<EventLog, never, PgClient.PgClient> =>
  Layer.scoped(EventLog, make(options))
