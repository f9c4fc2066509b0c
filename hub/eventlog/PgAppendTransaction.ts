/**
 * One attempt at appending a batch, in one transaction on the writer's connection. Usually one round trip: from the
 * head the writer last committed (`PgWriterHead`), settle each request (a version conflict, or events to chain), and
 * send begin, `connect_append` (which takes the append lock, checks that head, inserts with one multi-row statement and
 * notifies), the inline projections' writes and the commit in one message. When the head was not what the writer
 * believed (another process appended, a stream it did not know, a retried id), the same in two round trips: take the
 * lock and read the head and the looked-up ids first. And when that fails for one request's sake, the same again with
 * each request under its own savepoint.
 */
import { Cause, Effect, Either, Option } from "effect"
import { type AppendResult, EventLogError, type ExpectedVersion, type StoredEvent, VersionConflict } from "../../core/EventLog.ts"
import type { Event, EventMeta } from "../../core/Events.ts"
import * as AppendBatch from "../../core/AppendBatch.ts"
import { GENESIS_HASH } from "../../core/HashChain.ts"
import type { Projection } from "../../core/Projection.ts"
import type { Connector, WriterConnection } from "./PgWriterConnection.ts"
import type { Head, WriterHead } from "./PgWriterHead.ts"
import * as Recovery from "./PgWriterRecovery.ts"
import { ProjectionSql } from "../../core/ProjectionSql.ts"

/**
 * Key of the transaction-scoped advisory lock that serializes appends across every hub process on the database.
 * Holding it from before the head is read until commit is what makes position order equal commit order, so a reader
 * that has seen position N can never later find a committed event below N.
 */
export const APPEND_LOCK_KEY = 0x636f6e6e656374 // "connect"

/** Channel on which the writer announces each commit (payload: the new head position). */
export const NOTIFY_CHANNEL = "connect_events"

/** One caller's append, waiting for the writer. */
export interface Pending extends Recovery.Identified {
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

/** What an attempt runs with: the writer's connection, the head it believes in, and the inline projections. */
export interface AppendContext {
  readonly connector: Connector
  readonly head: WriterHead
  readonly inline: ReadonlyArray<Projection<ProjectionSql>>
}

/**
 * The errors `connect_append` raises when the head, a guessed stream version or the writer's clock was not what the
 * writer believed, or an id may be stored already: the transaction is rolled back and the batch goes the slow way.
 */
const STALE_CODES = new Set(["CN001", "CN002", "CN003", "CN004"])

/** Constraints whose violation by the writer's own insert means its belief was wrong, not that the request is bad. */
const BELIEF_CONSTRAINTS = new Set(["events_pkey", "events_stream_version_key"])

/**
 * Whether an attempt from the writer's belief failed because the belief was stale (see `STALE_CODES`), or collided
 * with a position or stream version it believed free: either way the batch is tried again from the head under the lock.
 */
export const isStale = (error: unknown): boolean =>
  Recovery.isServerError(error) &&
  (STALE_CODES.has(error.code!) || (error.code === "23505" && BELIEF_CONSTRAINTS.has(error.constraint ?? "")))

const toBuffer = (b: unknown): Uint8Array => (b instanceof Uint8Array ? b : Buffer.from(String(b), "hex"))

/** The log is unavailable: Postgres or the connection failed, not the request. */
export const unavailable = (cause: unknown) =>
  new EventLogError({ reason: "Unavailable", message: `event log unavailable: ${Recovery.messageOf(cause)}`, cause })

/** Refused by Postgres: the request's own fault. */
export const rejected = (cause: unknown) =>
  new EventLogError({ reason: "Rejected", message: `append refused by Postgres: ${Recovery.messageOf(cause)}`, cause })

/** What a caller is told when its request failed for good: its own refusal, or the log being unavailable. */
export const failureOf = (error: unknown): EventLogError =>
  error instanceof EventLogError ? error : Recovery.isRefusal(error) ? rejected(error) : unavailable(error)

/** Adds a statement to the pipeline; a value that cannot be sent as a literal is the request's fault. */
const addStatement = (conn: WriterConnection, text: string, params: ReadonlyArray<unknown>) =>
  Effect.try({ try: () => conn.pipeline.add(text, params), catch: rejected })

/** Where the chain stands inside an append transaction (see `AppendBatch.Cursor`), and what the attempt must check. */
interface Cursor extends AppendBatch.Cursor {
  /** Per request of the batch, its result if its events are already stored (see `PgWriterRecovery`). */
  readonly stored: ReadonlyArray<AppendResult | undefined>
  /** Versions assumed for streams the writer did not know, which `connect_append` checks. */
  readonly guesses: Map<string, number>
  /** Ids that may be stored already and were not looked up: `connect_append` checks that none is. */
  readonly unchecked: ReadonlyArray<string>
  /** Computed from the writer's belief, its time estimated (not read under the lock). */
  readonly fromBelief: boolean
}

/**
 * Adds the transaction's begin. The isolation level and synchronous commit are pinned in every transaction, whatever
 * the database's and the session's defaults (a pooler or a `RESET ALL` could undo a session setting): under repeatable
 * read the head would be read from a snapshot taken before the lock wait, and without a synchronous commit a subscriber
 * could see a position that a crash then reuses. They go in the same message: no round trip.
 */
const beginTransaction = (conn: WriterConnection) => {
  conn.pipeline.addRaw("begin isolation level read committed")
  conn.pipeline.addRaw("set local synchronous_commit = on")
}

/**
 * Opens the transaction, takes the append lock, reads the head and the batch's stream versions, and looks up the ids
 * of requests that may already be stored: one round trip.
 */
const lockAndReadHead = (conn: WriterConnection, batch: ReadonlyArray<Pending>) =>
  Effect.gen(function* () {
    beginTransaction(conn)
    const i = conn.pipeline.add(`select * from connect_append_head($1, $2::text[])`, [
      APPEND_LOCK_KEY,
      [...new Set(batch.map((p) => p.stream))]
    ])
    const lookup = Recovery.idsToLookUp(batch)
    const j = lookup.length > 0 ? conn.pipeline.add(Recovery.LOOKUP_SQL, [lookup]) : -1
    // A server error here (a lock or statement timeout waiting for the lock) is no request's fault: the whole batch
    // fails as Unavailable rather than waiting again with each request isolated.
    const results = yield* Effect.mapError(conn.pipeline.send, (e) => (Recovery.isServerError(e) ? unavailable(e) : e))
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
      stored: j < 0 ? [] : Recovery.storedResults(batch, results[j]!),
      guesses: new Map(),
      unchecked: [],
      fromBelief: false
    } satisfies Cursor
  })

/**
 * The cursor of an append computed from what the writer believes, without a round trip: the head it last committed,
 * the versions it remembers, and for a stream it does not know, a guess (the version the first request expects, else
 * none) that `connect_append` checks. Its time is the database's clock as the writer estimates it (never before the
 * head's), which `connect_append` checks.
 */
const fromBelief = (head: Head, known: WriterHead, batch: ReadonlyArray<Pending>, clock: number): Cursor => {
  const versions = new Map<string, number>()
  const guesses = new Map<string, number>()
  for (const p of batch) {
    if (versions.has(p.stream)) continue
    const version = known.version(p.stream)
    if (version !== undefined) {
      versions.set(p.stream, version)
    } else {
      const guess = typeof p.expected === "number" ? p.expected : 0
      versions.set(p.stream, guess)
      guesses.set(p.stream, guess)
    }
  }
  const now = Math.floor(clock)
  return {
    position: head.position,
    prevHash: head.hash,
    versions,
    recordedAt: new Date(Math.max(now, head.recordedAt.getTime())),
    stored: [],
    guesses,
    unchecked: Recovery.idsToLookUp(batch),
    fromBelief: true
  }
}

/** The head before an append, and what `connect_append` must check besides it. */
interface Check {
  readonly position: number
  readonly hash: Uint8Array
  readonly guesses: ReadonlyMap<string, number>
  readonly unchecked: ReadonlyArray<string>
  /** How far the time stamped may be from the database's clock; null when it is the database's (the slow path). */
  readonly maxSkew: string | null
}

const checkOf = (cursor: Cursor): Check => ({
  position: cursor.position,
  hash: cursor.prevHash,
  guesses: cursor.guesses,
  unchecked: cursor.unchecked,
  maxSkew: cursor.fromBelief ? MAX_SKEW : null
})

/**
 * How far the writer's estimate of the database's clock may be off when it arrives: seconds, so that only a clock
 * that jumped (or a process stalled that long) sends the writer to the slow path.
 */
const MAX_SKEW = "5 seconds"

/**
 * Adds the append of prepared events after the head `check` (one `connect_append` call: lock, check, multi-row insert,
 * notify) and the inline projections' writes to the pipeline. Nothing is sent.
 */
const write = (
  ctx: AppendContext,
  conn: WriterConnection,
  check: Check,
  requests: ReadonlyArray<{ readonly p: Pending; readonly stored: ReadonlyArray<StoredEvent> }>
) =>
  Effect.gen(function* () {
    const stored = requests.flatMap((r) => r.stored)
    yield* addStatement(
      conn,
      `select connect_append($1, $2, $3, $4::text[], $5::int[], $6::uuid[], $7::bigint[], $8::uuid[], $9::text[],
         $10::int[], $11::uuid[], $12::text[], $13::text, $14::text, $15::timestamptz, $16::bytea[], $17::bytea[],
         $18::interval)`,
      [
        APPEND_LOCK_KEY,
        check.position,
        Buffer.from(check.hash),
        [...check.guesses.keys()],
        [...check.guesses.values()],
        check.unchecked,
        stored.map((e) => e.position),
        stored.map((e) => e.id),
        stored.map((e) => e.stream),
        stored.map((e) => e.version),
        stored.map((e) => e.workspaceId),
        stored.map((e) => e.type),
        stored.map((e) => e.dataJson).join("\n"),
        stored.map((e) => e.metaJson).join("\n"),
        stored[0]?.recordedAt ?? new Date(),
        stored.map((e) => Buffer.from(e.prevHash)),
        stored.map((e) => e.hash),
        check.maxSkew
      ]
    )
    if (stored.length === 0) return
    // The inline projections run in this same transaction, so they are at the head by construction and store no
    // checkpoint here (moving one row per projection was a fifth of the server's work for a one-event append); only a
    // rebuild records where its replay ended.
    for (const projection of ctx.inline) {
      yield* projection.apply(stored).pipe(
        Effect.provideService(ProjectionSql, conn.projectionSql),
        Effect.mapError(
          (cause) =>
            new EventLogError({
              reason: "Projection",
              message: `inline projection ${projection.name} failed: ${Recovery.messageOf(cause)}`,
              cause
            })
        )
      )
    }
  })

/** What one request of a batch comes to. */
export type Outcome = Either.Either<AppendResult, VersionConflict | EventLogError>


/**
 * The ids a batch writes, so that a request repeating ids written earlier in the same batch (a caller's retry that
 * joined the batch its first attempt is in) is answered with what that one stores, not written twice.
 */
class BatchIds {
  private readonly written = new Map<string, StoredEvent>()
  /** The earlier result for `p`'s ids, a refusal if only some are written, or undefined if none is. */
  settled(p: Pending): Outcome | undefined {
    if (!p.callerIds) return undefined
    const found = p.ids.filter((id) => this.written.has(id))
    if (found.length === 0) return undefined
    if (found.length < p.ids.length) {
      return Either.left(new EventLogError({ reason: "Rejected", message: `append to ${p.stream}: some of its ids are written by another request of the same batch` }))
    }
    return Either.right(AppendBatch.resultOf(p.ids.map((id) => this.written.get(id)!)))
  }
  add(stored: ReadonlyArray<StoredEvent>): void {
    for (const e of stored) this.written.set(e.id, e)
  }
}

/** Settles each request against the cursor: already stored, a version conflict, or events to write. */
const settle = (batch: ReadonlyArray<Pending>, cursor: Cursor) => {
  const outcomes: Array<Outcome> = []
  const writes: Array<{ p: Pending; stored: ReadonlyArray<StoredEvent> }> = []
  const ids = new BatchIds()
  batch.forEach((p, i) => {
    // Already stored (an earlier COMMIT whose reply was lost): answered from the log, not written again.
    const already = cursor.stored[i]
    if (already) return void outcomes.push(Either.right(already))
    const repeated = ids.settled(p)
    if (repeated) return void outcomes.push(repeated)
    const prepared = AppendBatch.prepare(cursor, p)
    if (Either.isRight(prepared)) {
      writes.push({ p, stored: prepared.right })
      ids.add(prepared.right)
    }
    outcomes.push(Either.map(prepared, AppendBatch.resultOf))
  })
  return { outcomes, writes }
}

/** The head after an append, as the writer will believe in it. */
const headOf = (cursor: Cursor): Head => ({
  position: cursor.position,
  hash: cursor.prevHash,
  recordedAt: cursor.recordedAt
})

/**
 * Commits a batch in one transaction with one insert, from the cursor `begin` opens it with; a version conflict fails
 * only its own request. The insert, the projections' writes and the commit go in one round trip.
 */
const commitBatch = (
  ctx: AppendContext,
  batch: ReadonlyArray<Pending>,
  begin: (conn: WriterConnection) => Effect.Effect<Cursor, Error | EventLogError>
) =>
  ctx.connector.transaction((conn) =>
    Effect.gen(function* () {
      const cursor = yield* begin(conn)
      const check = checkOf(cursor)
      const { outcomes, writes } = settle(batch, cursor)
      yield* write(ctx, conn, check, writes)
      conn.pipeline.addRaw("commit")
      yield* Recovery.duringCommit(conn.pipeline.send)
      ctx.head.committed(headOf(cursor), cursor.versions)
      return { head: cursor.position, outcomes }
    })
  )

/** Opens the transaction from the writer's belief: nothing is sent until the commit. */
const fromHead = (ctx: AppendContext, head: Head, batch: ReadonlyArray<Pending>) => (conn: WriterConnection) =>
  Effect.sync(() => {
    beginTransaction(conn)
    return fromBelief(head, ctx.head, batch, conn.databaseNow())
  })

/** Opens the transaction by taking the lock and reading the head: one round trip. */
const fromLock = (ctx: AppendContext, batch: ReadonlyArray<Pending>) => (conn: WriterConnection) =>
  Effect.tap(lockAndReadHead(conn, batch), (cursor) => ctx.head.read(headOf(cursor), cursor.versions))

/**
 * Commits a batch that failed as a whole again, in one transaction, each request under its own savepoint: a request
 * that Postgres or a projection refuses is rolled back alone and the rest commit with one fsync.
 */
const commitIsolated = (ctx: AppendContext, batch: ReadonlyArray<Pending>) =>
  ctx.connector.transaction((conn) =>
    Effect.gen(function* () {
      const cursor = yield* fromLock(ctx, batch)(conn)
      const outcomes: Array<Outcome> = []
      const ids = new BatchIds()
      for (let i = 0; i < batch.length; i++) {
        const p = batch[i]!
        const already = cursor.stored[i]
        if (already) {
          outcomes.push(Either.right(already))
          continue
        }
        const repeated = ids.settled(p)
        if (repeated) {
          outcomes.push(repeated)
          continue
        }
        const prepared = AppendBatch.prepare(cursor, p)
        if (Either.isLeft(prepared)) {
          outcomes.push(Either.left(prepared.left))
          continue
        }
        const stored = prepared.right
        const check: Check = {
          position: stored[0]!.position - 1,
          hash: stored[0]!.prevHash,
          guesses: new Map(),
          unchecked: [],
          maxSkew: null
        }
        // The savepoint goes alone, so that it surely exists when the request's statements fail wherever they fail.
        conn.pipeline.addRaw("savepoint append_request")
        yield* conn.pipeline.send
        const written = yield* Effect.either(
          Effect.zipRight(
            write(ctx, conn, check, [{ p, stored }]),
            Effect.suspend(() => {
              conn.pipeline.addRaw("release savepoint append_request")
              return conn.pipeline.send
            })
          )
        )
        if (Either.isRight(written)) {
          ids.add(stored)
          outcomes.push(Either.right(AppendBatch.resultOf(stored)))
        } else {
          yield* conn.pipeline.recover("rollback to savepoint append_request")
          AppendBatch.rewind(cursor, stored)
          outcomes.push(Either.left(failureOf(written.left)))
        }
      }
      conn.pipeline.addRaw("commit")
      yield* Recovery.duringCommit(conn.pipeline.send)
      ctx.head.committed(headOf(cursor), cursor.versions)
      return { head: cursor.position, outcomes }
    })
  )

/**
 * Commits a batch in one round trip from the writer's belief when it has one, else (or when `connect_append` finds it
 * stale) in two, from the head read under the lock.
 */
const commitOnce = (ctx: AppendContext, batch: ReadonlyArray<Pending>) => {
  const head = ctx.head.head()
  if (head === undefined) return commitBatch(ctx, batch, fromLock(ctx, batch))
  return commitBatch(ctx, batch, fromHead(ctx, head, batch)).pipe(
    Effect.catchIf(isStale, (error) =>
      Effect.suspend(() => {
        if ((error as { code?: string }).code === "CN004") ctx.head.pause()
        return commitBatch(ctx, batch, fromLock(ctx, batch))
      })
    )
  )
}

/**
 * One attempt at a batch: in one transaction, and if that fails for one request's sake or on a server error (a
 * statement timeout in one request's projection), again with each request isolated, so the others still commit.
 */
export const attempt = (ctx: AppendContext, batch: ReadonlyArray<Pending>) =>
  commitOnce(ctx, batch).pipe(
    Effect.catchAllCause((cause) => {
      // A defect (a projection's bug) is one request's too.
      const failure = Cause.failureOption(cause)
      const kind = Option.isSome(failure) ? Recovery.classify(failure.value) : "refused"
      return batch.length > 1 && (kind === "refused" || kind === "failed") ? commitIsolated(ctx, batch) : Effect.failCause(cause)
    })
  )
