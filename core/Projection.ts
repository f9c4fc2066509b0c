/**
 * The projection contract: a named read model built from the event log, applied batch by batch in position order,
 * whose checkpoint is stored in the same transaction as its writes.
 */
import { Context, type Effect } from "effect"
import type { EventLogError, StoredEvent } from "./EventLog.ts"
import type { ProjectionSql } from "./ProjectionSql.ts"

/**
 * A projection. `inline` ones run inside the append transaction (the API reads its own writes); `async` ones follow
 * the log from their checkpoint. Both can be dropped and rebuilt from position 0 with identical content.
 */
export interface Projection<R = never> {
  /** Unique name; also the key of its checkpoint row. */
  readonly name: string
  /** Where it runs: inside the append transaction, or behind it from a checkpoint. */
  readonly mode: "inline" | "async"
  /**
   * The tables it writes (default: the one named like the projection), by unqualified name: a rebuild fills shadow
   * copies of them, found first on the search path, and swaps them in.
   */
  readonly tables?: ReadonlyArray<string>
  /**
   * Applies a batch of events in position order (events it does not care about, `UnknownEvent`s among them, are simply
   * skipped).
   */
  readonly apply: (events: ReadonlyArray<StoredEvent>) => Effect.Effect<void, unknown, R>
  /** Removes everything the projection wrote (a rebuild does without: it fills empty shadow tables). */
  readonly reset: Effect.Effect<void, unknown, R>
}

/** Options of a catch-up. */
export interface CatchUpOptions {
  /** Called after each batch with the position reached and the head the catch-up runs to. */
  readonly onProgress?: (position: number, head: number) => Effect.Effect<void>
}

/**
 * Brings an async projection up to the head of the log now, from its checkpoint, batch by batch with the same
 * compare-and-set as a follower: for a reader whose answer must be complete when no hub follows the log (the audit
 * CLI next to a stopped hub). The hub's `ProjectionRunner` implements it; `run` returns the position reached.
 */
export class ProjectionCatchUp extends Context.Tag("connect/core/ProjectionCatchUp")<
  ProjectionCatchUp,
  {
    /** Applies every event after the projection's checkpoint up to (at least) the head as it is now. */
    readonly run: (
      projection: Projection<ProjectionSql>,
      options?: CatchUpOptions
    ) => Effect.Effect<number, EventLogError>
  }
>() {}
