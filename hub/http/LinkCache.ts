/**
 * The links the proxy looked up, by token hash, kept `ttlMs` (default 5 s) so that a busy link costs the database one
 * lookup per few seconds instead of one per request: its expiry is checked on every request against the copy, and a
 * revocation drops the copy at once (LinkNotices.ts, from this hub's API or from the log). Tokens that match no link
 * are kept apart, `unknownTtlMs` (default 5 s) and at most `max` of them, so that a stranger repeating a wrong token
 * costs one lookup per few seconds and a flood of distinct guesses never pushes the live links out. Each map holds
 * at most `max` entries: past it, the oldest go first. A lookup during which its link was forgotten (revoked) may
 * have read the link as it was before: its answer is not kept, and the link is read once more.
 */
import type { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect } from "effect"
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
}

interface Entry {
  readonly row: Links.Row | undefined
  readonly at: number
}

/** Makes an empty cache. */
export const make = (
  options: {
    readonly ttlMs?: number
    readonly unknownTtlMs?: number
    readonly max?: number
    readonly now?: () => number
    /** The lookup (default the read model's). */
    readonly lookup?: (tokenHash: string) => Effect.Effect<Links.Row | undefined, SqlError, SqlClient.SqlClient>
  } = {}
): LinkCache => {
  const ttl = options.ttlMs ?? 5_000
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
  let running = 0
  const forgottenAt = new Map<string, number>()
  const lookupOnce = (tokenHash: string) =>
    Effect.suspend(() => {
      const began = forgets
      running++
      return lookup(tokenHash).pipe(
        Effect.map((row) => ({ row, stale: row !== undefined && (forgottenAt.get(row.id) ?? -1) >= began })),
        Effect.ensuring(Effect.sync(() => {
          if (--running === 0) forgottenAt.clear()
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
  return {
    known,
    get: (tokenHash) =>
      Effect.suspend(() => {
        const hit = known(tokenHash)
        if (hit) return Effect.succeed(hit.row)
        // A stale answer is read once more, and that read is kept only if it is not stale as well.
        const fresh = Effect.flatMap(lookupOnce(tokenHash), (first) => first.stale ? lookupOnce(tokenHash) : Effect.succeed(first))
        return Effect.map(fresh, ({ row, stale }) => {
          if (stale) return row
          if (row) {
            unknown.delete(tokenHash)
            put(links, tokenHash, row)
          } else {
            links.delete(tokenHash)
            put(unknown, tokenHash, undefined)
          }
          return row
        })
      }),
    forget: (linkId) => {
      for (const [hash, entry] of links) if (entry.row?.id === linkId) links.delete(hash)
      if (running > 0) forgottenAt.set(linkId, forgets)
      forgets++
    }
  }
}
