/**
 * The event log contract: an append-only, gap-free, hash-chained sequence of events with per-stream versions.
 * Postgres is one implementation (hub/eventlog/PgEventLog.ts); everything else in the system is a projection of it.
 */
import { Context, Data, Effect, Option, Schema, Stream } from "effect"
import type { Event, EventMeta } from "./Events.ts"
import type { Envelope } from "./HashChain.ts"

/**
 * What the caller expects the stream's current version to be: `"any"` skips the check, `"no_stream"` requires that the
 * stream has no events yet, a number requires exactly that last version (versions start at 1).
 */
export type ExpectedVersion = "any" | "no_stream" | number

/** Options of one append. */
export interface AppendOptions {
  readonly expectedVersion: ExpectedVersion
  /** Workspace the events belong to; null for hub-level events. */
  readonly workspaceId: string | null
  /** Who did it, from where; stored in the `meta` column. */
  readonly meta: EventMeta
  /**
   * The events' ids (UUIDv7, one per event), for a caller that appends again after an `Unavailable` answer: an append
   * whose ids are already stored commits nothing and returns the stored result, so a retry never stores an event twice.
   * Without them the log draws fresh ids, once per append.
   */
  readonly ids?: ReadonlyArray<string>
}

/** What a successful append returns. */
export interface AppendResult {
  /** Position of the first appended event. */
  readonly firstPosition: number
  /** Position of the last appended event. */
  readonly lastPosition: number
  /** The stream's version after the append. */
  readonly version: number
}

/**
 * An event as stored, its payload and metadata still the JSON text Postgres renders for them (what `verify` hashes
 * and exporters copy).
 */
export interface RawEvent extends Envelope {
  readonly hash: Uint8Array
}

/** One event as the hash chain sees it, in the cheapest form a store can give: what verification reads. */
export interface ChainLink {
  readonly position: number
  /** The event's canonical encoding (`canonicalText` of its stored columns). */
  readonly canonical: string
  /** The stored `prev_hash`, lowercase hex. */
  readonly prevHash: string
  /** The stored `hash`, lowercase hex. */
  readonly hash: string
}

/** Where and how a range of the chain does not hold. */
export interface ChainBreak {
  /** The first position that is altered, unlinked, or missing. */
  readonly position: number
  readonly reason: "hash_mismatch" | "broken_link" | "gap"
}

/**
 * An event whose `type` this build's catalog does not know (a newer build wrote it). Reads and subscriptions pass it on
 * undecoded instead of failing, so a follower goes on and an exporter can still copy it raw (`dataJson`).
 */
export class UnknownEvent extends Data.TaggedClass("UnknownEvent")<{
  /** The stored `type`. */
  readonly type: string
  /** The stored payload, parsed but not decoded. */
  readonly data: unknown
}> {}

/** An event as stored, decoded through its schema (or kept as an `UnknownEvent` when its type is not in the catalog). */
export interface StoredEvent extends RawEvent {
  readonly event: Event | UnknownEvent
  readonly meta: EventMeta
}

/** A stored event whose type the catalog knows: what a stream read gives a decider. */
export interface KnownStoredEvent extends StoredEvent {
  readonly event: Event
}

/** The stream was not at the expected version; nothing was appended. */
export class VersionConflict extends Schema.TaggedError<VersionConflict>()("VersionConflict", {
  stream: Schema.String,
  expected: Schema.Union(Schema.Literal("any", "no_stream"), Schema.Number),
  actual: Schema.Number
}) {
  override get message() {
    return `stream ${this.stream} is at version ${this.actual}, expected ${this.expected}`
  }
}

/** The log could not do what was asked: the database is unreachable, a stored event does not decode, ... */
export class EventLogError extends Schema.TaggedError<EventLogError>()("EventLogError", {
  reason: Schema.Literal("Unavailable", "Decode", "Rejected", "Projection"),
  message: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {}

/** The head of the log: its last position and hash (position 0 and the genesis hash when empty). */
export class Head extends Data.Class<{ readonly position: number; readonly hash: Uint8Array }> {}

/** The event log service. */
export class EventLog extends Context.Tag("connect/core/EventLog")<
  EventLog,
  {
    /** Appends events to one stream atomically, checking the expected version first. */
    readonly append: (
      stream: string,
      events: ReadonlyArray<Event>,
      options: AppendOptions
    ) => Effect.Effect<AppendResult, VersionConflict | EventLogError>
    /** Events after a position, in position order, at most `limit`; an unknown type comes as an `UnknownEvent`. */
    readonly readAll: (after: number, limit: number) => Effect.Effect<ReadonlyArray<StoredEvent>, EventLogError>
    /** The chain links after a position, in position order, at most `limit` (what `verify` reads). */
    readonly readLinks: (after: number, limit: number) => Effect.Effect<ReadonlyArray<ChainLink>, EventLogError>
    /**
     * Has the store recompute the chain over positions `after + 1 .. upTo` itself (each hash from the stored columns,
     * each link to the stored predecessor, no missing position) and return the first break, if any.
     */
    readonly checkChain: (after: number, upTo: number) => Effect.Effect<ChainBreak | undefined, EventLogError>
    /**
     * All events of one stream in version order, starting after `afterVersion` (default 0). An unknown type fails the
     * read (`Decode`): a command must not decide on a history it cannot read.
     */
    readonly readStream: (
      stream: string,
      afterVersion?: number
    ) => Effect.Effect<ReadonlyArray<KnownStoredEvent>, EventLogError>
    /**
     * Every event after a position, then every event committed later, in position order, forever; an unknown type
     * comes as an `UnknownEvent` and the stream goes on.
     */
    readonly subscribe: (after: number) => Stream.Stream<StoredEvent, EventLogError>
    /** The current head. */
    readonly head: Effect.Effect<Head, EventLogError>
  }
>() {}

/**
 * Reads a log from `after` (default: the start) in pages of `pageSize` (`read(after, limit)`, as `readAll` and
 * `readLinks` read), one page ahead: the next page is on its way while the consumer works on the current one, which is
 * what makes verify and rebuild cost the larger of reading and processing rather than their sum.
 */
export const pagesAhead = <A extends { readonly position: number }, E, R>(
  read: (after: number, limit: number) => Effect.Effect<ReadonlyArray<A>, E, R>,
  pageSize: number,
  after = 0
): Stream.Stream<ReadonlyArray<A>, E, R> =>
  Stream.paginateEffect(after, (after: number) =>
    Effect.map(read(after, pageSize), (page) =>
      [page, page.length < pageSize ? Option.none() : Option.some(page[page.length - 1]!.position)] as const
    )
  ).pipe(
    Stream.filter((page) => page.length > 0),
    Stream.buffer({ capacity: 1 })
  )
