/**
 * The Postgres event log: serialized, hash-chained appends through one group-commit writer fiber per process,
 * position-ordered reads, and subscriptions that catch up by position and wake on LISTEN/NOTIFY or a poll.
 */
import { PgClient } from "@effect/sql-pg"
import { Cause, Chunk, Duration, Effect, Either, Layer, Option, PubSub, Queue, Redacted, Schedule, Schema, Stream } from "effect"
import Pg from "pg"
import {
  type AppendOptions,
  type AppendResult,
  type ChainBreak,
  type ChainLink,
  EventLog,
  EventLogError,
  type ExpectedVersion,
  Head,
  type RawEvent,
  type StoredEvent,
  VersionConflict
} from "../core/EventLog.ts"
import { decodeEventEither, encodeEvent, type Event, EventMeta } from "../core/Events.ts"
import { canonicalText, GENESIS_HASH, hashEnvelope, jsonbText, NotCanonical } from "../core/HashChain.ts"
import { uuidv7 } from "../core/Ids.ts"
import type { Projection } from "../core/Projection.ts"
import * as PgPipeline from "./PgPipeline.ts"
import * as Recovery from "./PgWriterRecovery.ts"
import { ProjectionSql } from "./ProjectionSql.ts"

/**
 * Key of the transaction-scoped advisory lock that serializes appends across every hub process on the database.
 * Holding it from before the head is read until commit is what makes position order equal commit order, so a reader
 * that has seen position N can never later find a committed event below N.
 */
export const APPEND_LOCK_KEY = 0x636f6e6e656374 // "connect"

/** Channel on which the writer announces each commit (payload: the new head position). */
export const NOTIFY_CHANNEL = "connect_events"

/** Options of the Postgres event log. */
export interface PgEventLogOptions {
  /** Projections run inside every append transaction. */
  readonly inline?: ReadonlyArray<Projection<ProjectionSql>>
  /** Most append requests committed in one transaction (default 512). */
  readonly maxBatch?: number
  /** How often a subscriber polls when no notification arrives (default 1 s). */
  readonly pollInterval?: number
  /**
   * Longest a statement of the writer may run, lock waits included (default 15 s); past it the append fails as
   * Unavailable instead of hanging. The writer's client gives up on a server that does not answer at all 2 s later.
   */
  readonly statementTimeout?: Duration.DurationInput
  /** Most append requests waiting for the writer (default 10,000); past it an append fails at once as Unavailable. */
  readonly maxQueued?: number
}

interface Pending extends Recovery.Identified {
  readonly stream: string
  readonly types: ReadonlyArray<string>
  /** Each event's payload as jsonb text (what Postgres will render it as, and what the hash covers). */
  readonly dataJson: ReadonlyArray<string>
  readonly events: ReadonlyArray<Event>
  readonly expected: ExpectedVersion
  readonly workspaceId: string | null
  readonly meta: EventMeta
  readonly metaJson: string
  /** Completes the caller's append; called exactly once. */
  readonly resume: (outcome: Effect.Effect<AppendResult, VersionConflict | EventLogError>) => void
}

const unavailable = (cause: unknown) =>
  new EventLogError({ reason: "Unavailable", message: `event log unavailable: ${messageOf(cause)}`, cause })

const rejected = (cause: unknown) =>
  new EventLogError({ reason: "Rejected", message: `append refused by Postgres: ${messageOf(cause)}`, cause })

const { messageOf } = Recovery

/** What a caller is told when its request failed for good: its own refusal, or the log being unavailable. */
const failureOf = (error: unknown): EventLogError =>
  error instanceof EventLogError ? error : Recovery.isRefusal(error) ? rejected(error) : unavailable(error)

const queueFull = new EventLogError({ reason: "Unavailable", message: "audit log unavailable: writer queue full" })

const encodeMeta = Schema.encodeSync(EventMeta)

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
 * Decodes a stored row through its event's schema into a `StoredEvent`, built on the row's `RawEvent` without a copy
 * (rebuilds decode millions, and a third of their time went to the garbage collector); an unknown type or bad payload
 * is an `EventLogError` naming the position. `metaCache` holds the last decoded metadata: consecutive events of one
 * actor share the same meta text, and decoding it again was a fifth of a rebuild's time.
 */
const decodeRow = (
  row: Record<string, unknown>,
  metaCache: { text: string; meta: EventMeta | undefined }
): StoredEvent | EventLogError => {
  const raw = rowToRaw(row)
  let data: unknown
  try {
    data = JSON.parse(raw.dataJson)
  } catch (cause) {
    return decodeFailure(raw, "stored JSON does not parse", cause)
  }
  const event = decodeEventEither(raw.type, data)
  if (Either.isLeft(event)) return decodeFailure(raw, event.left.message, event.left)
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
  stored.event = event.right
  stored.meta = metaCache.meta
  return stored
}

/** Decodes a page of rows in one synchronous pass. */
const decodePage = (rows: ReadonlyArray<Record<string, unknown>>): Effect.Effect<Array<StoredEvent>, EventLogError> =>
  Effect.suspend(() => {
    const out: Array<StoredEvent> = new Array(rows.length)
    const metaCache = { text: "", meta: undefined as EventMeta | undefined }
    for (let i = 0; i < rows.length; i++) {
      const decoded = decodeRow(rows[i]!, metaCache)
      if (decoded instanceof EventLogError) return Effect.fail(decoded)
      out[i] = decoded
    }
    return Effect.succeed(out)
  })

// Payloads as text (the text the chain hashes; parsed once by decodeRow) and the time as epoch ms (exact: the writer
// stores whole milliseconds), which is also cheaper to read than a timestamptz.
const SELECT_COLUMNS = `position, id, stream, version, workspace_id, type, data::text as data, meta::text as meta,
  (extract(epoch from recorded_at) * 1000)::bigint as recorded_ms, prev_hash, hash`

/**
 * node-postgres settings for the writer's own connection: the same server, user and type parsers as the pool, a
 * statement timeout, a client-side timeout for a server that stops answering, and TCP keepalive after 10 s idle
 * (the OS default waits two hours to notice a peer that vanished).
 */
const writerConfig = (config: PgClient.PgClientConfig, statementTimeout: number): Pg.ClientConfig => ({
  ...(config.url ? { connectionString: Redacted.value(config.url) } : {}),
  ...(config.host ? { host: config.host } : {}),
  ...(config.port ? { port: config.port } : {}),
  ...(config.database ? { database: config.database } : {}),
  ...(config.username ? { user: config.username } : {}),
  ...(config.password ? { password: Redacted.value(config.password) } : {}),
  ...(config.ssl !== undefined ? { ssl: config.ssl } : {}),
  ...(config.types ? { types: config.types } : {}),
  application_name: `${config.applicationName ?? "connect"} writer`,
  connectionTimeoutMillis: Duration.toMillis(config.connectTimeout ?? Duration.seconds(5)),
  statement_timeout: statementTimeout,
  query_timeout: statementTimeout + 2000,
  keepAlive: true,
  keepAliveInitialDelayMillis: 10_000
})

/** Whether a failed transaction left its connection unusable: it failed, or the outcome of its COMMIT is unknown. */
const connectionFailed = (cause: Cause.Cause<unknown>): boolean => {
  const failure = Cause.failureOption(cause)
  if (Option.isNone(failure)) return false
  const kind = Recovery.classify(failure.value)
  return kind === "down" || kind === "unknown"
}

/** Adds a statement to the pipeline; a value that cannot be sent as a literal is the request's fault. */
const addStatement = (conn: WriterConnection, text: string, params: ReadonlyArray<unknown>) =>
  Effect.try({ try: () => conn.pipeline.add(text, params), catch: rejected })

/** The writer's connection, with its pipeline (see `PgPipeline`). */
interface WriterConnection {
  readonly client: Pg.Client
  /** Statements sent together: a transaction is two round trips (begin + head; writes + commit). */
  readonly pipeline: PgPipeline.Pipeline
  /** The same connection as inline projections see it: their writes join the pipeline and go with the commit. */
  readonly projectionSql: ProjectionSql["Type"]
}

/** Builds the Postgres event log; its writer fiber lives as long as the surrounding scope. */
export const make = Effect.fn("PgEventLog.make")(function* (options: PgEventLogOptions = {}) {
  const sql = yield* PgClient.PgClient
  const inline = options.inline ?? []
  const inlineNames = inline.map((p) => p.name)
  const maxBatch = options.maxBatch ?? 512
  const pollInterval = options.pollInterval ?? 1000
  const statementTimeout = Duration.toMillis(options.statementTimeout ?? "15 seconds")
  const maxQueued = options.maxQueued ?? 10_000
  // Requests wait in a plain array and each caller waits in its own `Effect.async`: a Queue offer and a Deferred per
  // append cost ~30 µs of scheduling (measured: 64 fibers appending into an instant writer), the array ~3 µs, and
  // every microsecond here is spent while the database waits for the next batch.
  let queued: Array<Pending> = []
  let closed = false
  let wakeWriter: (() => void) | undefined
  const closedError = new EventLogError({ reason: "Unavailable", message: "event log closed" })
  // The writer wakes when the first request arrives but takes the queue only when it actually runs, after the fibers
  // scheduled before it (typically the other callers of the last batch) have queued their requests too.
  const takeBatch = (): Array<Pending> => {
    if (queued.length <= maxBatch) {
      const batch = queued
      queued = []
      return batch
    }
    return queued.splice(0, maxBatch)
  }
  const nextBatch: Effect.Effect<Array<Pending>> = Effect.suspend(() =>
    queued.length > 0
      ? Effect.succeed(takeBatch())
      : Effect.zipRight(
        Effect.async<void>((resume) => {
          wakeWriter = () => {
            wakeWriter = undefined
            resume(Effect.void)
          }
          return Effect.sync(() => {
            wakeWriter = undefined
          })
        }),
        Effect.sync(takeBatch)
      )
  )
  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      closed = true
      const waiting = queued
      queued = []
      for (const p of waiting) p.resume(Effect.fail(closedError))
    })
  )
  // Wakes subscribers in this process the moment the writer commits, without a round trip through Postgres.
  const committed = yield* Effect.acquireRelease(PubSub.sliding<number>(1), PubSub.shutdown)

  // The writer runs its transactions on a node-postgres connection of its own rather than through the pool: through
  // @effect/sql each statement cost ~0.27 ms on the client against ~0.08 ms raw, and with a pipeline a transaction is
  // two round trips (begin + lock + head; insert + projection writes + commit) instead of five, all while it holds the
  // append lock that every hub process queues on. A broken connection is replaced on the next batch.
  let current: WriterConnection | undefined
  const discard = (conn: WriterConnection) =>
    Effect.sync(() => {
      if (current === conn) current = undefined
      conn.client.end().catch(() => undefined)
    })
  const connect: Effect.Effect<WriterConnection, EventLogError> = Effect.suspend(() => {
    if (current) return Effect.succeed(current)
    return Effect.async<WriterConnection, EventLogError>((resume) => {
      const client = new Pg.Client(writerConfig(sql.config, statementTimeout))
      const pipeline = PgPipeline.make(client)
      const conn: WriterConnection = {
        client,
        pipeline,
        projectionSql: ProjectionSql.of({
          execute: (text, params) => Effect.try({ try: () => void pipeline.add(text, params), catch: (error) => error })
        })
      }
      const lost = () => {
        if (current === conn) current = undefined
      }
      client.on("error", lost)
      client.on("end", lost)
      client.connect((error: Error | undefined) => {
        if (error) {
          client.end().catch(() => undefined)
          resume(Effect.fail(unavailable(error)))
        } else {
          current = conn
          resume(Effect.succeed(conn))
        }
      })
      return Effect.sync(() => void client.end().catch(() => undefined))
    })
  })
  yield* Effect.addFinalizer(() => (current ? discard(current) : Effect.void))

  /**
   * Runs `body`, which opens and commits a transaction on the writer's connection through its pipeline. After a failure
   * the transaction is rolled back; a connection that failed (or an interrupted one, whose statement may still be
   * running), or that cannot even roll back, is dropped.
   */
  const transaction = <A, E>(body: (conn: WriterConnection) => Effect.Effect<A, E>) =>
    Effect.flatMap(connect, (conn) =>
      body(conn).pipe(
        Effect.onError((cause) =>
          Cause.isInterruptedOnly(cause) || connectionFailed(cause)
            ? discard(conn)
            : conn.pipeline.recover("rollback").pipe(
              Effect.timeout("5 seconds"),
              Effect.catchAllCause(() => discard(conn))
            )
        )
      )
    )

  /** Where the chain stands inside an append transaction: last position and hash, and each stream's version. */
  interface Cursor {
    position: number
    prevHash: Uint8Array
    readonly versions: Map<string, number>
    readonly recordedAt: Date
    /** Per request of the batch, its result if its events are already stored (see `PgWriterRecovery`). */
    readonly stored: ReadonlyArray<AppendResult | undefined>
  }

  /**
   * Opens the transaction, takes the append lock, reads the head and the batch's stream versions, and looks up the ids
   * of requests that may already be stored: one round trip. The isolation level and synchronous commit are pinned
   * whatever the database's defaults: under repeatable read the head would be read from a snapshot taken before the
   * lock wait, and without a synchronous commit a subscriber could see a position that a crash then reuses.
   */
  const lockAndReadHead = (conn: WriterConnection, batch: ReadonlyArray<Pending>) =>
    Effect.gen(function* () {
      conn.pipeline.addRaw("begin isolation level read committed")
      conn.pipeline.addRaw("set local synchronous_commit = on")
      const i = conn.pipeline.add(`select * from connect_append_head($1, $2::text[])`, [
        APPEND_LOCK_KEY,
        [...new Set(batch.map((p) => p.stream))]
      ])
      const lookup = Recovery.idsToLookUp(batch)
      const j = lookup.length > 0 ? conn.pipeline.add(Recovery.LOOKUP_SQL, [lookup]) : -1
      const results = yield* conn.pipeline.send
      const rows = results[i] as ReadonlyArray<
        { stream: string | null; version: number | null; hash: Uint8Array | null; now: Date }
      >
      const head = rows[0]!
      const versions = new Map<string, number>()
      for (const r of rows.slice(1)) versions.set(r.stream!, Number(r.version ?? 0))
      return {
        position: Number(head.version ?? 0),
        prevHash: head.hash ? toBuffer(head.hash) : GENESIS_HASH,
        versions,
        recordedAt: head.now,
        stored: j < 0 ? [] : Recovery.storedResults(batch, results[j]!)
      } satisfies Cursor
    })

  /**
   * Checks a request's expected version and, if it holds, assigns positions, versions and chain hashes to its events,
   * advancing the cursor. Pure computation: nothing is written.
   */
  const prepare = (p: Pending, cursor: Cursor): Either.Either<ReadonlyArray<StoredEvent>, VersionConflict> => {
    const current = cursor.versions.get(p.stream) ?? 0
    const ok = p.expected === "any" || (p.expected === "no_stream" ? current === 0 : p.expected === current)
    if (!ok) return Either.left(new VersionConflict({ stream: p.stream, expected: p.expected, actual: current }))
    const stored: Array<StoredEvent> = []
    for (let i = 0; i < p.types.length; i++) {
      const position = cursor.position + 1
      const version = current + i + 1
      const id = p.ids[i]!
      const envelope = {
        position,
        id,
        stream: p.stream,
        version,
        workspaceId: p.workspaceId,
        type: p.types[i]!,
        dataJson: p.dataJson[i]!,
        metaJson: p.metaJson,
        recordedAt: cursor.recordedAt,
        prevHash: cursor.prevHash
      }
      const hash = hashEnvelope(envelope)
      stored.push({ ...envelope, event: p.events[i]!, meta: p.meta, hash })
      cursor.position = position
      cursor.prevHash = hash
    }
    cursor.versions.set(p.stream, current + p.types.length)
    return Either.right(stored)
  }

  /** Inserts prepared events with one multi-row statement, runs the inline projections, and notifies listeners. */
  const write = (
    conn: WriterConnection,
    requests: ReadonlyArray<{ readonly p: Pending; readonly stored: ReadonlyArray<StoredEvent> }>
  ) =>
    Effect.gen(function* () {
      const stored = requests.flatMap((r) => r.stored)
      if (stored.length === 0) return
      yield* addStatement(
        conn,
        `with ins as (
           insert into events (position, id, stream, version, workspace_id, type, data, meta, recorded_at, prev_hash, hash)
           select p, i, s, v, w, t, d::jsonb, m::jsonb, $11::timestamptz, ph, h
             from unnest($1::bigint[], $2::uuid[], $3::text[], $4::int[], $5::uuid[], $6::text[],
                         -- Payloads travel as newline-joined text (jsonb text never holds a raw newline): an array
                         -- literal would escape every quote, and unescaping them was a third of the bind time.
                         string_to_array($7::text, E'\n'), string_to_array($8::text, E'\n'),
                         $9::bytea[], $10::bytea[]) as u(p, i, s, v, w, t, d, m, ph, h)
           returning 1
         ), checkpoints as (
           -- The inline projections below run in this same transaction, so their checkpoint can move here.
           insert into projection_checkpoints (name, position) select unnest($13::text[]), $12::bigint
             on conflict (name) do update set position = excluded.position
         )
         select pg_notify('${NOTIFY_CHANNEL}', $12::text), (select count(*) from ins) as n`,
        [
          stored.map((e) => e.position),
          stored.map((e) => e.id),
          stored.map((e) => e.stream),
          stored.map((e) => e.version),
          stored.map((e) => e.workspaceId),
          stored.map((e) => e.type),
          stored.map((e) => e.dataJson).join("\n"),
          stored.map((e) => e.metaJson).join("\n"),
          stored.map((e) => Buffer.from(e.prevHash)),
          stored.map((e) => e.hash),
          stored[0]!.recordedAt,
          String(stored[stored.length - 1]!.position),
          inlineNames
        ]
      )
      for (const projection of inline) {
        yield* projection.apply(stored).pipe(
          Effect.provideService(ProjectionSql, conn.projectionSql),
          Effect.mapError(
            (cause) =>
              new EventLogError({
                reason: "Projection",
                message: `inline projection ${projection.name} failed: ${messageOf(cause)}`,
                cause
              })
          )
        )
      }
    })

  type Outcome = Either.Either<AppendResult, VersionConflict | EventLogError>

  const resultOf = (stored: ReadonlyArray<StoredEvent>): AppendResult => ({
    firstPosition: stored[0]!.position,
    lastPosition: stored[stored.length - 1]!.position,
    version: stored[stored.length - 1]!.version
  })

  /** Commits a batch in one transaction with one insert; a version conflict fails only its own request. */
  const commitBatch = (batch: ReadonlyArray<Pending>) =>
    transaction((conn) =>
      Effect.gen(function* () {
        const cursor = yield* lockAndReadHead(conn, batch)
        const outcomes: Array<Outcome> = []
        const writes: Array<{ p: Pending; stored: ReadonlyArray<StoredEvent> }> = []
        batch.forEach((p, i) => {
          // Already stored (an earlier COMMIT whose reply was lost): answered from the log, not written again.
          const already = cursor.stored[i]
          if (already) return void outcomes.push(Either.right(already))
          const prepared = prepare(p, cursor)
          if (Either.isRight(prepared)) writes.push({ p, stored: prepared.right })
          outcomes.push(Either.map(prepared, resultOf))
        })
        yield* write(conn, writes)
        // The insert, the projections' writes and the commit: one round trip.
        conn.pipeline.addRaw("commit")
        yield* Recovery.duringCommit(conn.pipeline.send)
        return { head: cursor.position, outcomes }
      })
    )

  /**
   * Commits a batch that failed as a whole again, in one transaction, each request under its own savepoint: a request
   * that Postgres or a projection refuses is rolled back alone and the rest commit with one fsync.
   */
  const commitIsolated = (batch: ReadonlyArray<Pending>) =>
    transaction((conn) =>
      Effect.gen(function* () {
        const cursor = yield* lockAndReadHead(conn, batch)
        const outcomes: Array<Outcome> = []
        for (let i = 0; i < batch.length; i++) {
          const p = batch[i]!
          const before = { position: cursor.position, prevHash: cursor.prevHash, version: cursor.versions.get(p.stream) }
          const already = cursor.stored[i]
          if (already) {
            outcomes.push(Either.right(already))
            continue
          }
          const prepared = prepare(p, cursor)
          if (Either.isLeft(prepared)) {
            outcomes.push(Either.left(prepared.left))
            continue
          }
          const stored = prepared.right
          // The savepoint goes alone, so that it surely exists when the request's statements fail wherever they fail.
          conn.pipeline.addRaw("savepoint append_request")
          yield* conn.pipeline.send
          const written = yield* Effect.either(
            Effect.zipRight(
              write(conn, [{ p, stored }]),
              Effect.suspend(() => {
                conn.pipeline.addRaw("release savepoint append_request")
                return conn.pipeline.send
              })
            )
          )
          if (Either.isRight(written)) {
            outcomes.push(Either.right(resultOf(stored)))
          } else {
            yield* conn.pipeline.recover("rollback to savepoint append_request")
            cursor.position = before.position
            cursor.prevHash = before.prevHash
            if (before.version === undefined) cursor.versions.delete(p.stream)
            else cursor.versions.set(p.stream, before.version)
            outcomes.push(Either.left(failureOf(written.left)))
          }
        }
        conn.pipeline.addRaw("commit")
        yield* Recovery.duringCommit(conn.pipeline.send)
        return { head: cursor.position, outcomes }
      })
    )

  /**
   * One attempt at a batch: in one transaction, and if that fails for one request's sake or on a server error (a
   * statement timeout in one request's projection), again with each request isolated, so the others still commit.
   */
  const attempt = (batch: ReadonlyArray<Pending>) =>
    commitBatch(batch).pipe(
      Effect.catchAllCause((cause) => {
        // A defect (a projection's bug) is one request's too.
        const failure = Cause.failureOption(cause)
        const kind = Option.isSome(failure) ? Recovery.classify(failure.value) : "refused"
        return batch.length > 1 && (kind === "refused" || kind === "failed") ? commitIsolated(batch) : Effect.failCause(cause)
      })
    )

  const complete = (p: Pending, outcome: Outcome) =>
    Either.match(outcome, {
      onLeft: (error) => p.resume(Effect.fail(error)),
      onRight: (result) => p.resume(Effect.succeed(result))
    })

  /**
   * Commits a batch and answers its callers. A batch whose COMMIT reply was lost is never run blind again: the next
   * attempts look its event ids up under the append lock and answer each caller with what really happened.
   */
  const writeBatch = (batch: ReadonlyArray<Pending>): Effect.Effect<void> =>
    Effect.gen(function* () {
      for (let n = 0;; n++) {
        const result = yield* Effect.either(attempt(batch))
        if (Either.isRight(result)) {
          batch.forEach((p, i) => complete(p, result.right.outcomes[i]!))
          return yield* PubSub.publish(committed, result.right.head)
        }
        const error = result.left
        if (Recovery.classify(error) === "unknown") for (const p of batch) p.unknown = true
        if (n < Recovery.RECOVERY_DELAYS.length && batch.some((p) => p.unknown)) {
          yield* Effect.sleep(Recovery.RECOVERY_DELAYS[n]!)
          continue
        }
        for (const p of batch) p.resume(Effect.fail(p.unknown ? Recovery.outcomeUnknown(error) : failureOf(error)))
        return
      }
    }).pipe(
      // A defect (a bug) fails the batch's callers rather than the writer.
      Effect.catchAllDefect((defect) =>
        Effect.sync(() => {
          for (const p of batch) p.resume(Effect.fail(p.unknown ? Recovery.outcomeUnknown(defect) : unavailable(defect)))
        })
      ),
      Effect.withSpan("EventLog.writeBatch", { attributes: { requests: batch.length } })
    )

  yield* Effect.gen(function* () {
    const batch = yield* nextBatch
    // A batch is never cut short: once its commit is sent its outcome is only known from the reply, and a caller told
    // "failed" for an event that committed would append it again. Shutdown waits for it; queued requests fail as closed.
    yield* Effect.uninterruptible(writeBatch(batch))
  }).pipe(Effect.forever, Effect.interruptible, Effect.forkScoped)

  // No span per append: an `Effect.fn` span costs ~20 µs per call (measured), as much as the rest of an append's
  // client-side work. Each batch is one span, "EventLog.writeBatch", with its request count.
  const append = (
    stream: string,
    events: ReadonlyArray<Event>,
    options: AppendOptions
  ): Effect.Effect<AppendResult, VersionConflict | EventLogError> =>
    Effect.suspend(() => {
      if (events.length === 0) {
        return Effect.fail(new EventLogError({ reason: "Rejected", message: `append to ${stream} with no events` }))
      }
      if (stream.includes("\u0000")) {
        return Effect.fail(new EventLogError({ reason: "Rejected", message: "a stream name cannot contain U+0000" }))
      }
      if (options.ids !== undefined && options.ids.length !== events.length) {
        return Effect.fail(
          new EventLogError({ reason: "Rejected", message: `append to ${stream}: ${options.ids.length} ids for ${events.length} events` })
        )
      }
      const types: Array<string> = []
      const dataJson: Array<string> = []
      let metaJson: string
      try {
        for (const event of events) {
          const encoded = encodeEvent(event)
          types.push(encoded.type)
          dataJson.push(jsonbText(encoded.data))
        }
        metaJson = jsonbText(encodeMeta(options.meta))
      } catch (error) {
        // Refused here so that the request fails alone instead of poisoning a batch.
        if (error instanceof NotCanonical) {
          return Effect.fail(
            new EventLogError({ reason: "Rejected", message: `append to ${stream} refused: ${error.message}` })
          )
        }
        throw error
      }
      return Effect.async<AppendResult, VersionConflict | EventLogError>((resume) => {
        if (closed) return resume(Effect.fail(closedError))
        // Bounded: a stalled database must not let appends pile up in memory; the callers refuse or spool instead.
        if (queued.length >= maxQueued) return resume(Effect.fail(queueFull))
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
        queued.push(request)
        wakeWriter?.()
        // An interrupted caller leaves the queue if its request is not in a batch yet; once it is, it commits anyway.
        return Effect.sync(() => {
          done = true
          const i = queued.indexOf(request)
          if (i >= 0) queued.splice(i, 1)
        })
      })
    })

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

  const readAll = (after: number, limit: number) =>
    Effect.flatMap(readRows(after, limit), decodePage).pipe(
      Effect.withSpan("EventLog.readAll")
    )

  const readStream = (stream: string, afterVersion = 0) =>
    sql
      .unsafe<Record<string, unknown>>(
        `select ${SELECT_COLUMNS} from events where stream = $1 and version > $2 order by version`,
        [stream, afterVersion]
      )
      .pipe(
        Effect.mapError(unavailable),
        Effect.flatMap(decodePage),
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

  return EventLog.of({ append, readAll, readLinks, checkChain, readStream, subscribe, head })
})

/** The event log as a layer over a PgClient. */
export const layer = (options: PgEventLogOptions = {}): Layer.Layer<EventLog, never, PgClient.PgClient> =>
  Layer.scoped(EventLog, make(options))
