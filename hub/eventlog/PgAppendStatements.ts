/**
 * The statements of an append, added to the writer connection's pipeline: the transaction's begin, the slow path's
 * lock and head read, and the append itself (`connect_append`: lock, checks, multi-row insert, notify) with the inline
 * projections' writes; and what a failure of them means (a stale belief, the request's refusal, the log unavailable).
 */
import { Effect } from "effect"
import { EventLogError, type StoredEvent } from "../../core/EventLog.ts"
import { GENESIS_HASH } from "../../core/HashChain.ts"
import type { Projection } from "../../core/Projection.ts"
import { ProjectionSql } from "../../core/ProjectionSql.ts"
import type { Cursor, Pending } from "./PgAppendCursor.ts"
import type { Connector, WriterConnection } from "./PgWriterConnection.ts"
import type { WriterHead } from "./PgWriterHead.ts"
import * as Recovery from "./PgWriterRecovery.ts"

/**
 * Key of the transaction-scoped advisory lock that serializes appends across every hub process on the database.
 * Holding it from before the head is read until commit is what makes position order equal commit order, so a reader
 * that has seen position N can never later find a committed event below N.
 */
export const APPEND_LOCK_KEY = 0x636f6e6e656374 // "connect"

/** Channel on which the writer announces each commit (payload: the new head position). */
export const NOTIFY_CHANNEL = "connect_events"

/**
 * What an attempt runs with: the writer's connection, the head it believes in, the inline projections, and whether
 * the batch being written announces its commit (see `PgNotifyPacer`; set by the writer before each batch).
 */
export interface AppendContext {
  readonly connector: Connector
  readonly head: WriterHead
  readonly inline: ReadonlyArray<Projection<ProjectionSql>>
  readonly pacing: { notify: boolean }
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
export const unavailable = Recovery.unavailable

/** Refused by Postgres: the request's own fault. */
export const rejected = (cause: unknown) =>
  new EventLogError({ reason: "Rejected", message: `append refused by Postgres: ${Recovery.messageOf(cause)}`, cause })

/** What a caller is told when its request failed for good: its own refusal, or the log being unavailable. */
export const failureOf = (error: unknown): EventLogError =>
  error instanceof EventLogError ? error : Recovery.isRefusal(error) ? rejected(error) : unavailable(error)

/** Adds a statement to the pipeline; a value that cannot be sent as a literal is the request's fault. */
const addStatement = (conn: WriterConnection, text: string, params: ReadonlyArray<unknown>) =>
  Effect.try({ try: () => conn.pipeline.add(text, params), catch: rejected })

/**
 * Adds the transaction's begin. The isolation level and synchronous commit are pinned in every transaction, whatever
 * the database's and the session's defaults (a pooler or a `RESET ALL` could undo a session setting): under repeatable
 * read the head would be read from a snapshot taken before the lock wait, and without a synchronous commit a subscriber
 * could see a position that a crash then reuses. They go in the same message: no round trip.
 */
export const beginTransaction = (conn: WriterConnection, notify: boolean) => {
  conn.pipeline.addRaw("begin isolation level read committed")
  conn.pipeline.addRaw("set local synchronous_commit = on")
  // Read by connect_append (migration 0028): this commit is not announced; the writer announces a later head.
  if (!notify) conn.pipeline.addRaw("set local connect.notify = off")
}

/**
 * Opens the transaction, takes the append lock, reads the head and the batch's stream versions, and looks up the ids
 * of requests that may already be stored: one round trip.
 */
export const lockAndReadHead = (conn: WriterConnection, batch: ReadonlyArray<Pending>, notify: boolean) =>
  Effect.gen(function* () {
    beginTransaction(conn, notify)
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

/** The head before an append, and what `connect_append` must check besides it. */
export interface Check {
  readonly position: number
  readonly hash: Uint8Array
  readonly guesses: ReadonlyMap<string, number>
  readonly unchecked: ReadonlyArray<string>
  /** How far the time stamped may be from the database's clock; null when it is the database's (the slow path). */
  readonly maxSkew: string | null
}

export const checkOf = (cursor: Cursor): Check => ({
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
export const write = (
  ctx: AppendContext,
  conn: WriterConnection,
  check: Check,
  requests: ReadonlyArray<{ readonly p: Pending; readonly stored: ReadonlyArray<StoredEvent> }>
) =>
  Effect.gen(function* () {
    const stored = requests.flatMap((r) => r.stored)
    // The columns of the insert as arrays, in one pass over the events.
    const n = stored.length
    const positions = new Array<number>(n)
    const ids = new Array<string>(n)
    const streams = new Array<string>(n)
    const versions = new Array<number>(n)
    const workspaces = new Array<string | null>(n)
    const types = new Array<string>(n)
    const prevHashes = new Array<Uint8Array>(n)
    const hashes = new Array<Uint8Array>(n)
    let data = ""
    let meta = ""
    for (let i = 0; i < n; i++) {
      const e = stored[i]!
      positions[i] = e.position
      ids[i] = e.id
      streams[i] = e.stream
      versions[i] = e.version
      workspaces[i] = e.workspaceId
      types[i] = e.type
      prevHashes[i] = Buffer.isBuffer(e.prevHash) ? e.prevHash : Buffer.from(e.prevHash)
      hashes[i] = e.hash
      data += i === 0 ? e.dataJson : "\n" + e.dataJson
      meta += i === 0 ? e.metaJson : "\n" + e.metaJson
    }
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
        positions,
        ids,
        streams,
        versions,
        workspaces,
        types,
        data,
        meta,
        stored[0]?.recordedAt ?? new Date(),
        prevHashes,
        hashes,
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

