/**
 * An in-memory `EventLog` for tests: the Postgres log's contract (expected versions, ids answered once, gap-free
 * positions, the same hash chain, reads, subscriptions) over an array, through `AppendBatch` as the Postgres writer
 * goes, so `verify` checks it alike; and a hook that fails appends the ways the Postgres log can.
 */
import { Chunk, Clock, Effect, Either, Layer, PubSub, Queue, Stream } from "effect"
import * as AppendBatch from "./AppendBatch.ts"
import {
  type AppendOptions,
  type AppendResult,
  type ChainBreak,
  EventLog,
  EventLogError,
  Head,
  type KnownStoredEvent,
  type VersionConflict
} from "./EventLog.ts"
import type { Event } from "./Events.ts"
import { canonicalEnvelope, GENESIS_HASH, hashEnvelope } from "./HashChain.ts"
import { uuidv7 } from "./Ids.ts"

/** How a failed append fails: before anything is stored, or after (its reply lost: the outcome unknown to the caller). */
export type AppendFault = "unreachable" | "replyLost"

/** The memory log and its test hook. */
export interface MemoryEventLog {
  /** The log, as the `EventLog` service. */
  readonly log: EventLog["Type"]
  /**
   * Makes the next append that passes its checks fail as `Unavailable` (calls queue up, one append each): having
   * stored nothing (`"unreachable"`), or having stored its events (`"replyLost"`), as the Postgres log answers when
   * a commit's reply is lost and its writer cannot find out.
   */
  readonly failNextAppend: (fault: AppendFault) => void
}

const rejected = (message: string) => new EventLogError({ reason: "Rejected", message })

const unavailable = (fault: AppendFault) =>
  new EventLogError({
    reason: "Unavailable",
    message: fault === "unreachable"
      ? "event log unavailable: the memory log was told to fail this append"
      : "event log unavailable: the outcome of this append is unknown (the memory log was told to lose its reply); " +
        "appending it again with the same ids is safe"
  })

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex")

/** Makes an empty memory log. */
export const make: Effect.Effect<MemoryEventLog> = Effect.gen(function* () {
  // events[i] is at position i + 1: positions are gap-free by construction.
  const events: Array<KnownStoredEvent> = []
  const byId = new Map<string, KnownStoredEvent>()
  const versions = new Map<string, number>()
  const faults: Array<AppendFault> = []
  const committed = yield* PubSub.sliding<number>(1)

  const headHash = () => (events.length === 0 ? GENESIS_HASH : events[events.length - 1]!.hash)

  /** The stored result when every id is stored already, a refusal when only some are, or undefined when none is. */
  const alreadyStored = (stream: string, ids: ReadonlyArray<string>): AppendResult | EventLogError | undefined => {
    const found = ids.map((id) => byId.get(id))
    if (found.every((e) => e === undefined)) {
      return new Set(ids).size === ids.length ? undefined : rejected(`append to ${stream} refused: an id is repeated`)
    }
    if (found.includes(undefined)) return rejected(`append to ${stream} refused: some of its ids are already stored, not all`)
    const last = found[found.length - 1]!
    return { firstPosition: found[0]!.position, lastPosition: last.position, version: last.version }
  }

  /** Settles one append synchronously: answered from the log, a conflict, or stored. */
  const settle = (
    stream: string,
    given: ReadonlyArray<Event>,
    options: AppendOptions,
    encoded: AppendBatch.Encoded,
    now: number
  ): Either.Either<AppendResult, VersionConflict | EventLogError> => {
    const ids = options.ids ?? given.map(() => uuidv7())
    if (options.ids !== undefined) {
      const stored = alreadyStored(stream, ids)
      if (stored instanceof EventLogError) return Either.left(stored)
      if (stored !== undefined) return Either.right(stored)
    }
    // The log's own version map is the cursor's: `prepare` moves a stream's version only when it stores its events.
    const cursor: AppendBatch.Cursor = { position: events.length, prevHash: headHash(), versions, recordedAt: new Date(now) }
    const request: AppendBatch.Request = {
      stream,
      expected: options.expectedVersion,
      ids,
      ...encoded,
      workspaceId: options.workspaceId,
      events: given,
      meta: options.meta
    }
    return Either.map(AppendBatch.prepare(cursor, request), (prepared) => {
      for (const e of prepared as ReadonlyArray<KnownStoredEvent>) {
        events.push(e)
        byId.set(e.id, e)
      }
      return AppendBatch.resultOf(prepared)
    })
  }

  const append = (stream: string, given: ReadonlyArray<Event>, options: AppendOptions) =>
    Effect.gen(function* () {
      const encoded = AppendBatch.encode(stream, given, options)
      if (Either.isLeft(encoded)) return yield* encoded.left
      const fault = faults.shift()
      if (fault === "unreachable") return yield* unavailable(fault)
      const now = yield* Clock.currentTimeMillis
      const outcome = settle(stream, given, options, encoded.right, now)
      if (Either.isRight(outcome)) yield* PubSub.publish(committed, events.length)
      if (fault === "replyLost") return yield* unavailable(fault)
      return yield* outcome
    })

  const readAll = (after: number, limit: number) => Effect.sync(() => events.slice(Math.max(after, 0), Math.max(after, 0) + limit))

  const readLinks = (after: number, limit: number) =>
    Effect.map(readAll(after, limit), (page) =>
      page.map((e) => ({ position: e.position, canonical: canonicalEnvelope(e), prevHash: hex(e.prevHash), hash: hex(e.hash) }))
    )

  const checkChain = (after: number, upTo: number) =>
    Effect.sync((): ChainBreak | undefined => {
      let prev = after <= 0 ? hex(GENESIS_HASH) : hex(events[after - 1]?.hash ?? GENESIS_HASH)
      for (const e of events.slice(Math.max(after, 0), upTo)) {
        if (hex(e.prevHash) !== prev) return { position: e.position, reason: "broken_link" }
        if (hex(hashEnvelope(e)) !== hex(e.hash)) return { position: e.position, reason: "hash_mismatch" }
        prev = hex(e.hash)
      }
      return undefined
    })

  const readStream = (stream: string, afterVersion = 0) =>
    Effect.sync(() => events.filter((e) => e.stream === stream && e.version > afterVersion))

  const subscribe = (after: number) =>
    Stream.unwrapScoped(
      Effect.gen(function* () {
        // Subscribed before the first read, so no append between that read and the wait goes unnoticed.
        const wake = yield* PubSub.subscribe(committed)
        let cursor = after
        const pull = Effect.gen(function* () {
          while (true) {
            const page = yield* readAll(cursor, 1000)
            if (page.length > 0) {
              cursor = page[page.length - 1]!.position
              return Chunk.unsafeFromArray(page)
            }
            yield* Queue.take(wake)
          }
        })
        return Stream.repeatEffectChunk(pull)
      })
    )

  const head = Effect.sync(() => new Head({ position: events.length, hash: headHash() }))

  return {
    log: EventLog.of({
      append: (stream, given, options) => append(stream, given, options).pipe(Effect.withSpan("EventLog.append")),
      readAll,
      readLinks,
      checkChain,
      readStream,
      subscribe,
      head
    }),
    failNextAppend: (fault) => {
      faults.push(fault)
    }
  }
})

/** A fresh memory log as the `EventLog`. */
export const layer: Layer.Layer<EventLog> = Layer.effect(EventLog, Effect.map(make, (memory) => memory.log))
