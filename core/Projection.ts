/**
 * The projection contract: a named read model built from the event log, applied batch by batch in position order,
 * whose checkpoint is stored in the same transaction as its writes.
 */
import type { Effect } from "effect"
import type { StoredEvent } from "./EventLog.ts"

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
