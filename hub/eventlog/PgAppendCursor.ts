/**
 * Where an append batch stands: the requests waiting for the writer (`Pending`), the cursor of the chain inside the
 * transaction (from the head read under the lock, or from what the writer believes), and how each request of a batch
 * settles against it (already stored, a version conflict, a repeat of ids in the same batch, or events to write).
 */
import { Effect, Either } from "effect"
import { type AppendResult, EventLogError, type ExpectedVersion, type StoredEvent, VersionConflict } from "../../core/EventLog.ts"
import type { Event, EventMeta } from "../../core/Events.ts"
import * as AppendBatch from "../../core/AppendBatch.ts"
import type { Head, WriterHead } from "./PgWriterHead.ts"
import * as Recovery from "./PgWriterRecovery.ts"

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

/** What one request of a batch comes to. */
export type Outcome = Either.Either<AppendResult, VersionConflict | EventLogError>

/** Where the chain stands inside an append transaction (see `AppendBatch.Cursor`), and what the attempt must check. */
export interface Cursor extends AppendBatch.Cursor {
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
 * The cursor of an append computed from what the writer believes, without a round trip: the head it last committed,
 * the versions it remembers, and for a stream it does not know, a guess (the version the first request expects, else
 * none) that `connect_append` checks. Its time is the database's clock as the writer estimates it (never before the
 * head's), which `connect_append` checks.
 */
export const fromBelief = (head: Head, known: WriterHead, batch: ReadonlyArray<Pending>, clock: number): Cursor => {
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

/**
 * The ids a batch writes, so that a request repeating ids written earlier in the same batch (a caller's retry that
 * joined the batch its first attempt is in) is answered with what that one stores, not written twice.
 */
export class BatchIds {
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
export const settle = (batch: ReadonlyArray<Pending>, cursor: Cursor) => {
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
export const headOf = (cursor: Cursor): Head => ({
  position: cursor.position,
  hash: cursor.prevHash,
  recordedAt: cursor.recordedAt
})

