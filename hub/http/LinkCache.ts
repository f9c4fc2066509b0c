/**
 * The links the proxy looked up, by token hash, kept `ttlMs` (default 5 s) so that a busy link costs the database one
 * lookup per few seconds instead of one per request: its expiry is checked on every request against the copy, and a
 * revocation drops the copy at once (LinkNotices.ts, from this hub's API or from the log). Tokens that match no link
 * are kept apart, `unknownTtlMs` (default 5 s) and at most `max` of them, so that a stranger repeating a wrong token
 * costs one lookup per few seconds and a flood of distinct guesses never pushes the live links out. Each map holds
 * at most `max` entries: past it, the oldest go first. A lookup during which its link was forgotten (revoked) may
 * have read the link as it was before: its answer is not kept, and the link is read once more.
 *
 * Lookups of one token at a time are one: requests that miss the same token while its lookup runs wait for that lookup
 * instead of each sending its own (when a busy link's copy expired, every request of the lookup's round trip went to
 * the database, and each cost its address a lookup out of the proxy's budget for unknown tokens). A link in use is
 * read again ahead of its expiry (`refreshDue`, from `refreshAfterMs`, default 3 s): its requests keep being served
 * from a copy younger than `ttlMs` while the new one is read, instead of waiting for a lookup every `ttlMs`.
 */
import type { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { Deferred, Effect, Exit, FiberId } from "effect"
import * as Links from "../readmodels/Links.ts"

/** What the cache knows of a token: its link, none (`undefined`), or nothing yet (a lookup is needed). */
export type Known = { readonly row: Links.Row | undefined } | undefined

/** The cache. */
export interface LinkCache {
  /** What the copies say of the token whose SHA-256 is `tokenHash` while they are fresh, without a lookup. */
  readonly known: (tokenHash: string) => Known
  /** The link whose token has SHA-256 `tokenHash` (undefined: none), from the copy while it is fresh. */
  readonly get: (tokenHash: string) => Effect.Effect<Links.Row | undefined, SqlError, SqlClient.SqlClient>
  /** Drops every copy of link `linkId`. */
  readonly forget: (linkId: string) => void
  /** Whether a lookup of the token is running (a request that misses it waits for that lookup: `get`). */
  readonly looking: (tokenHash: string) => boolean
  /**
   * Whether the fresh copy of a live link is old enough to be read again ahead of its expiry (then `get` with
   * `refresh`): true once per copy and second, so that a failing database is not asked on every request.
   */
  readonly refreshDue: (tokenHash: string) => boolean
  /** Reads the link of `tokenHash` again and keeps the answer, whether or not its copy is fresh (`refreshDue`). */
  readonly refresh: (tokenHash: string) => Effect.Effect<Links.Row | undefined, SqlError, SqlClient.SqlClient>
}

interface Entry {
  readonly row: Links.Row | undefined
  readonly at: number
}

/** Makes an empty cache. */
export const make = (
  options: {
    readonly ttlMs?: number
    /** A live link's copy this old is read again ahead of its expiry (default 3 s, at most `ttlMs`). */
    readonly refreshAfterMs?: number
    readonly unknownTtlMs?: number
    readonly max?: number
    readonly now?: () => number
    /** The lookup (default the read model's). */
    readonly lookup?: (tokenHash: string) => Effect.Effect<Links.Row | undefined, SqlError, SqlClient.SqlClient>
  } = {}
): LinkCache => {
  const ttl = options.ttlMs ?? 5_000
  const refreshAfter = Math.min(ttl, options.refreshAfterMs ?? 3_000)
  const unknownTtl = options.unknownTtlMs ?? 5_000
  const max = options.max ?? 10_000
  const now = options.now ?? Date.now
  const lookup = options.lookup ?? Links.byTokenHash
  const links = new Map<string, Entry>()
  const unknown = new Map<string, Entry>()
  const put = (entries: Map<string, Entry>, tokenHash: string, row: Links.Row | undefined) => {
    entries.delete(tokenHash)
    entries.set(tokenHash, { row, at: now() })
    // Maps iterate in insertion order: the first keys are the oldest.
    while (entries.size > max) entries.delete(entries.keys().next().value!)
  }
  // Forgets counted, and the count at which each link was last forgotten while lookups were running: a lookup that
  // began before a forget of its link must not put back the copy it read (a revoked link would answer for 5 s).
  let forgets = 0
  let lookups = 0
  const forgottenAt = new Map<string, number>()
  const lookupOnce = (tokenHash: string) =>
    Effect.suspend(() => {
      const began = forgets
      lookups++
      return lookup(tokenHash).pipe(
        Effect.map((row) => ({ row, stale: row !== undefined && (forgottenAt.get(row.id) ?? -1) >= began })),
        Effect.ensuring(Effect.sync(() => {
          if (--lookups === 0) forgottenAt.clear()
        }))
      )
    })
  const known = (tokenHash: string): Known => {
    const hit = links.get(tokenHash)
    if (hit && now() - hit.at < ttl) return hit
    const miss = unknown.get(tokenHash)
    if (miss && now() - miss.at < unknownTtl) return miss
    return undefined
  }
  // A stale answer is read once more, and that read is kept only if it is not stale as well.
  const read = (tokenHash: string) =>
    Effect.map(
      Effect.flatMap(lookupOnce(tokenHash), (first) => first.stale ? lookupOnce(tokenHash) : Effect.succeed(first)),
      ({ row, stale }) => {
        if (stale) return row
        if (row) {
          unknown.delete(tokenHash)
          put(links, tokenHash, row)
        } else {
          links.delete(tokenHash)
          put(unknown, tokenHash, undefined)
        }
        return row
      }
    )
  // The lookup of each token running now: whoever else needs that token waits for its answer. It is no one caller's:
  // an interrupted one (its timeout, a client gone) leaves the others a failure to answer, never an interruption.
  const running = new Map<string, Deferred.Deferred<Links.Row | undefined, SqlError>>()
  const shared = (tokenHash: string) =>
    Effect.suspend(() => {
      const pending = running.get(tokenHash)
      if (pending !== undefined) return Deferred.await(pending)
      const answer = Deferred.unsafeMake<Links.Row | undefined, SqlError>(FiberId.none)
      running.set(tokenHash, answer)
      return read(tokenHash).pipe(
        Effect.onExit((exit) => {
          if (running.get(tokenHash) === answer) running.delete(tokenHash)
          return Deferred.done(
            answer,
            Exit.isFailure(exit) && Exit.isInterrupted(exit)
              ? Exit.fail(new SqlError({ message: "the link's lookup was interrupted", cause: exit.cause }))
              : exit
          )
        })
      )
    })
  // When each copy may be read again ahead of its expiry next (a copy is tried at most once a second).
  const nextTry = new WeakMap<Entry, number>()
  return {
    known,
    get: (tokenHash) =>
      Effect.suspend(() => {
        const hit = known(tokenHash)
        return hit ? Effect.succeed(hit.row) : shared(tokenHash)
      }),
    forget: (linkId) => {
      for (const [hash, entry] of links) if (entry.row?.id === linkId) links.delete(hash)
      if (lookups > 0) forgottenAt.set(linkId, forgets)
      forgets++
    },
    looking: (tokenHash) => running.has(tokenHash),
    refreshDue: (tokenHash) => {
      const hit = links.get(tokenHash)
      if (hit === undefined || running.has(tokenHash)) return false
      const t = now()
      const age = t - hit.at
      if (age < refreshAfter || age >= ttl || t < (nextTry.get(hit) ?? 0)) return false
      nextTry.set(hit, t + 1_000)
      return true
    },
    refresh: shared
  }
}
