/**
 * The links the proxy looked up, by token hash, kept `ttlMs` (default 5 s) so that a busy link costs the database one
 * lookup per few seconds instead of one per request: its expiry is checked on every request against the copy, and a
 * revocation through this hub drops the copy at once (LinkNotices.ts); one made elsewhere is seen within `ttlMs`.
 * Unknown tokens are kept too (a flood of guesses stays off the database), and the whole cache holds at most `max`
 * entries: past it, the oldest go first.
 */
import type { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect } from "effect"
import * as Links from "../readmodels/Links.ts"

/** The cache. */
export interface LinkCache {
  /** The link whose token has SHA-256 `tokenHash` (undefined: none), from the copy while it is fresh. */
  readonly get: (tokenHash: string) => Effect.Effect<Links.Row | undefined, SqlError, SqlClient.SqlClient>
  /** Drops every copy of link `linkId`. */
  readonly forget: (linkId: string) => void
}

/** Makes an empty cache. */
export const make = (options: { readonly ttlMs?: number; readonly max?: number; readonly now?: () => number } = {}): LinkCache => {
  const ttl = options.ttlMs ?? 5_000
  const max = options.max ?? 10_000
  const now = options.now ?? Date.now
  const entries = new Map<string, { readonly row: Links.Row | undefined; readonly at: number }>()
  return {
    get: (tokenHash) =>
      Effect.suspend(() => {
        const hit = entries.get(tokenHash)
        if (hit && now() - hit.at < ttl) return Effect.succeed(hit.row)
        return Effect.tap(Links.byTokenHash(tokenHash), (row) =>
          Effect.sync(() => {
            entries.delete(tokenHash)
            entries.set(tokenHash, { row, at: now() })
            // Maps iterate in insertion order: the first keys are the oldest.
            while (entries.size > max) entries.delete(entries.keys().next().value!)
          }))
      }),
    forget: (linkId) => {
      for (const [hash, entry] of entries) if (entry.row?.id === linkId) entries.delete(hash)
    }
  }
}
