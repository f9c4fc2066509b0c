/**
 * The proxy's copies of links: a token that matches nothing is looked up once per few seconds, however often it is
 * tried, and a flood of distinct guesses never pushes a live link out (which would send its every request to the
 * database).
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber } from "effect"
import * as LinkCache from "../../../hub/http/LinkCache.ts"
import type * as Links from "../../../hub/readmodels/Links.ts"

const row = { id: "link-1" } as unknown as Links.Row

/** A cache over a counting lookup that knows one token, `live`, on a clock the test moves. */
const counted = () => {
  let t = 0
  const lookups: Array<string> = []
  const cache = LinkCache.make({
    now: () => t,
    lookup: (hash) => Effect.sync(() => (lookups.push(hash), hash === "live" ? row : undefined))
  })
  // The lookup needs no database here.
  const get = (hash: string) => Effect.provideService(cache.get(hash), SqlClient.SqlClient, undefined as never)
  return { cache, get, lookups, advance: (ms: number) => void (t += ms) }
}

describe("LinkCache", () => {
  it.effect("looks an unknown token up once per few seconds, however often it is tried", () =>
    Effect.gen(function*() {
      const { advance, get, lookups } = counted()
      for (let i = 0; i < 100; i++) expect(yield* get("guess")).toBeUndefined()
      expect(lookups).toEqual(["guess"])
      advance(5_000)
      yield* get("guess")
      expect(lookups).toEqual(["guess", "guess"])
    }))

  it.effect("keeps a live link through a flood of 20,000 distinct guesses", () =>
    Effect.gen(function*() {
      const { cache, get, lookups } = counted()
      expect(yield* get("live")).toBe(row)
      for (let i = 0; i < 20_000; i++) yield* get(`guess-${i}`)
      expect(cache.known("live")).toEqual({ row, at: 0 })
      expect(yield* get("live")).toBe(row)
      expect(lookups.filter((h) => h === "live")).toHaveLength(1)
    }))

  it.effect("forgets a revoked link at once", () =>
    Effect.gen(function*() {
      const { cache, get, lookups } = counted()
      yield* get("live")
      cache.forget("link-1")
      expect(cache.known("live")).toBeUndefined()
      yield* get("live")
      expect(lookups).toEqual(["live", "live"])
    }))

  it.effect("does not keep a copy read before a revocation that came during the lookup", () =>
    Effect.gen(function*() {
      // The lookup reads the link before its revocation commits, and answers after the revocation was told.
      const revoked = { ...row, revoked_at: new Date(0) } as unknown as Links.Row
      const answers = [yield* Deferred.make<Links.Row>(), yield* Deferred.make<Links.Row>()]
      const lookups: Array<string> = []
      const cache = LinkCache.make({ lookup: (hash) => Effect.suspend(() => Deferred.await(answers[lookups.push(hash) - 1]!)) })
      const get = (hash: string) => Effect.provideService(cache.get(hash), SqlClient.SqlClient, undefined as never)
      const first = yield* Effect.fork(get("live"))
      yield* Effect.yieldNow()
      expect(lookups).toEqual(["live"])
      cache.forget("link-1")
      yield* Deferred.succeed(answers[0]!, row)
      // The stale copy is not kept: the link is read again, and that read (after the revocation) answers.
      yield* Effect.yieldNow()
      yield* Deferred.succeed(answers[1]!, revoked)
      expect(yield* Fiber.join(first)).toBe(revoked)
      expect(lookups).toEqual(["live", "live"])
      expect(cache.known("live")?.row).toBe(revoked)
    }))
})
