/**
 * The Postgres event log: serialized, hash-chained appends through one group-commit writer fiber per process (see
 * `PgWriter`), position-ordered reads, and subscriptions that catch up by position and wake on LISTEN/NOTIFY or a poll.
 */
import { PgClient } from "@effect/sql-pg"
import { Chunk, Effect, Either, Layer, PubSub, Queue, Schedule, Schema, Stream } from "effect"
import {
  type ChainBreak,
  type ChainLink,
  EventLog,
  EventLogError,
  Head,
  type KnownStoredEvent,
  type RawEvent,
  type StoredEvent,
  UnknownEvent
} from "../../core/EventLog.ts"
import { decodeEventEither, EventMeta, UnknownEventType } from "../../core/Events.ts"
import { canonicalText, GENESIS_HASH } from "../../core/HashChain.ts"
import { NOTIFY_CHANNEL } from "./PgAppendStatements.ts"
import * as PgWriter from "./PgWriter.ts"
import { messageOf } from "./PgWriterRecovery.ts"

export { APPEND_LOCK_KEY, NOTIFY_CHANNEL } from "./PgAppendStatements.ts"

/** Options of the Postgres event log: its writer's, and how often a subscriber polls. */
export interface PgEventLogOptions extends PgWriter.PgWriterOptions {
  /** How often a subscriber polls when no notification arrives (default 1 s). */
  readonly pollInterval?: number
}

const unavailable = (cause: unknown) =>
  new EventLogError({ reason: "Unavailable", message: `event log unavailable: ${messageOf(cause)}`, cause })

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

  // Every column as text and rows as arrays: nothing for the driver to parse, and the canonical text is assembled from
  // the very strings Postgres sent. Row parsing was half of verify's time when bytea and timestamps were decoded.
  // (`order by events.position`: a bare `position` would name the text output column and sort "10" before "2".)
  const readLinks = (after: number, limit: number) =>
    sql
      .unsafe(
        `select position::text, id::text, stream, version::text, workspace_id::text, type, data::text, meta::text,
           (extract(epoch from recorded_at) * 1000)::bigint::text, encode(prev_hash, 'hex'), encode(hash, 'hex')
         from events where position > $1 order by events.position limit $2`,
        [after, limit]
      )
      .values.pipe(
        Effect.map((rows) => {
          const links: Array<ChainLink> = new Array(rows.length)
          for (let i = 0; i < rows.length; i++) {
            const r = rows[i] as ReadonlyArray<string | null>
            links[i] = {
              position: Number(r[0]),
              canonical: canonicalText(r[0]!, r[1]!, r[2]!, r[3]!, r[4] ?? null, r[5]!, r[6]!, r[7]!, r[8]!),
              prevHash: r[9]!,
              hash: r[10]!
            }
          }
          return links
        }),
        Effect.mapError(unavailable),
        Effect.withSpan("EventLog.readLinks")
      )

  // The chain recomputed by Postgres: the canonical text of `canonicalText` built in SQL (to_json renders a string as
  // JSON.stringify does; integers and the epoch milliseconds print alike), hashed with pg_catalog.sha256 and compared
  // with the stored hash and the stored predecessor. Nothing crosses the wire but the first break, so a range costs
  // only the server's reading and hashing, and two ranges at once use two cores.
  const checkChain = (after: number, upTo: number) =>
    sql
      .unsafe<{ position: number; reason: ChainBreak["reason"]; missing: number }>(
        `with page as (
           select position, prev_hash, lag(position) over w as prev_position, lag(hash) over w as prev_stored,
                  hash = pg_catalog.sha256(prev_hash || pg_catalog.convert_to(
                    '[' || position || ',' || to_json(id::text)::text || ',' || to_json(stream)::text || ',' || version
                    || ',' || coalesce(to_json(workspace_id::text)::text, 'null') || ',' || to_json(type)::text || ','
                    || data::text || ',' || meta::text || ',' || (extract(epoch from recorded_at) * 1000)::bigint
                    || ']', 'UTF8')) as hash_ok
             from events where position >= $1 and position <= $2
           window w as (order by position)
         ), checked as (
           -- Row $1 is read only for its hash; when it is missing, $1 itself is the first gap.
           select position, prev_hash, hash_ok, prev_stored,
                  coalesce(prev_position, case when $1 = 0 then 0 else -1 end) as prev_position
             from page where position > $1
         )
         select position,
                case when prev_position <> position - 1 then 'gap'
                     when prev_hash <> coalesce(prev_stored, decode(repeat('00', 32), 'hex')) then 'broken_link'
                     else 'hash_mismatch' end as reason,
                case when prev_position < 0 then $1 else prev_position + 1 end as missing
           from checked
          where prev_position <> position - 1 or prev_hash <> coalesce(prev_stored, decode(repeat('00', 32), 'hex'))
             or not hash_ok
          order by position limit 1`,
        [after, upTo]
      )
      .pipe(
        Effect.map((rows): ChainBreak | undefined => {
          const row = rows[0]
          if (!row) return undefined
          return { position: Number(row.reason === "gap" ? row.missing : row.position), reason: row.reason }
        }),
        Effect.mapError(unavailable),
        Effect.withSpan("EventLog.checkChain")
      )

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
        const pull: Effect.Effect<Chunk.Chunk<StoredEvent>, EventLogError> = Effect.gen(function* () {
          while (true) {
            const events = yield* readAll(cursor, 1000)
            if (events.length > 0) {
              cursor = events[events.length - 1]!.position
              return Chunk.unsafeFromArray(events)
            }
            yield* Queue.take(wake).pipe(Effect.timeoutOption(pollInterval))
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
