/**
 * What the writer knows of the log between its appends: the head it last committed or read (position, hash, time) and
 * the versions of the streams it last wrote or read. While no other process appends, this is the truth, and an append
 * can be computed from it and sent with its commit in one round trip; `connect_append` checks it under the lock.
 */

/** Most stream versions remembered; a forgotten stream is guessed, and a wrong guess costs one extra round trip. */
const MAX_STREAMS = 100_000

/** The head the writer believes in. */
export interface Head {
  readonly position: number
  readonly hash: Uint8Array
  /** Time of the head's events: the next append's is never earlier. */
  readonly recordedAt: Date
}

/** The writer's knowledge of the head and of stream versions. */
export interface WriterHead {
  /** The head, or undefined when unknown (at start, after a failure, after another process appended). */
  readonly head: () => Head | undefined
  /** A stream's version as of the head, or undefined when not remembered. */
  readonly version: (stream: string) => number | undefined
  /**
   * The head read under the append lock with the versions of some streams: if it is not the head believed in, other
   * processes appended, and every remembered version may be stale, so they are forgotten.
   */
  readonly read: (head: Head, versions: ReadonlyMap<string, number>) => void
  /** An append committed: the new head and the versions of the streams it wrote. */
  readonly committed: (head: Head, versions: ReadonlyMap<string, number>) => void
  /** Forgets everything: an append's outcome is unknown, or it failed in a way that says nothing of the head. */
  readonly forget: () => void
  /**
   * Believes in nothing for a minute: the writer's clock is too far off the database's for its time to be stamped,
   * so appends take the database's time, which only the head read under the lock gives.
   */
  readonly pause: () => void
}

/** How long `pause` lasts. */
const PAUSE_MS = 60_000

const sameHead = (a: Head | undefined, b: Head): boolean =>
  a !== undefined && a.position === b.position && Buffer.from(a.hash).equals(Buffer.from(b.hash))

/** An empty head: the first append reads the real one under the lock. */
export const make = (): WriterHead => {
  let current: Head | undefined
  let pausedUntil = 0
  // Insertion order is recency: a stream is re-inserted when written, and the oldest are dropped past MAX_STREAMS.
  const versions = new Map<string, number>()
  const remember = (from: ReadonlyMap<string, number>) => {
    for (const [stream, version] of from) {
      versions.delete(stream)
      versions.set(stream, version)
    }
    for (const stream of versions.keys()) {
      if (versions.size <= MAX_STREAMS) break
      versions.delete(stream)
    }
  }
  return {
    head: () => (pausedUntil > Date.now() ? undefined : current),
    version: (stream) => versions.get(stream),
    read: (head, read) => {
      if (!sameHead(current, head)) versions.clear()
      current = head
      remember(read)
    },
    committed: (head, written) => {
      current = head
      remember(written)
    },
    forget: () => {
      current = undefined
      versions.clear()
    },
    pause: () => {
      pausedUntil = Date.now() + PAUSE_MS
    }
  }
}
