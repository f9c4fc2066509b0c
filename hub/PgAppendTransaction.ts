/**
 * One attempt at appending a batch, in one transaction on the writer's connection: take the append lock, read the
 * head, settle each request (already stored, a version conflict, or events to chain), insert with one multi-row
 * statement, run the inline projections, commit — and when that fails for one request's sake, the same again with each
 * request under its own savepoint.
 */
import { Cause, Effect, Either, Option } from "effect"
import { type AppendResult, EventLogError, type ExpectedVersion, type StoredEvent, VersionConflict } from "../core/EventLog.ts"
import type { Event, EventMeta } from "../core/Events.ts"
import { GENESIS_HASH, hashEnvelope } from "../core/HashChain.ts"
import type { Projection } from "../core/Projection.ts"
import type { Connector, WriterConnection } from "./PgWriterConnection.ts"
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

/** What an attempt runs with: the writer's connection and the inline projections. */
export interface AppendContext {
  readonly connector: Connector
  readonly inline: ReadonlyArray<Projection<ProjectionSql>>
  readonly inlineNames: ReadonlyArray<string>
}

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
  ctx: AppendContext,
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
        ctx.inlineNames
      ]
    )
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

const resultOf = (stored: ReadonlyArray<StoredEvent>): AppendResult => ({
  firstPosition: stored[0]!.position,
  lastPosition: stored[stored.length - 1]!.position,
  version: stored[stored.length - 1]!.version
})

/** Commits a batch in one transaction with one insert; a version conflict fails only its own request. */
const commitBatch = (ctx: AppendContext, batch: ReadonlyArray<Pending>) =>
  ctx.connector.transaction((conn) =>
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
      yield* write(ctx, conn, writes)
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
const commitIsolated = (ctx: AppendContext, batch: ReadonlyArray<Pending>) =>
  ctx.connector.transaction((conn) =>
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
            write(ctx, conn, [{ p, stored }]),
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
export const attempt = (ctx: AppendContext, batch: ReadonlyArray<Pending>) =>
  commitBatch(ctx, batch).pipe(
    Effect.catchAllCause((cause) => {
      // A defect (a projection's bug) is one request's too.
      const failure = Cause.failureOption(cause)
      const kind = Option.isSome(failure) ? Recovery.classify(failure.value) : "refused"
      return batch.length > 1 && (kind === "refused" || kind === "failed") ? commitIsolated(ctx, batch) : Effect.failCause(cause)
    })
  )
