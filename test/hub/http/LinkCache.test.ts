/**
 * The proxy's copies of links: a token that matches nothing is looked up once per few seconds, however often it is
 * tried, and a flood of distinct guesses never pushes a live link out (which would send its every request to the
 * database).
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber } from "effect"
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

  it.effect("requests that miss one token while its lookup runs wait for that lookup instead of sending their own", () =>
    Effect.gen(function*() {
      const answer = yield* Deferred.make<Links.Row>()
      const lookups: Array<string> = []
      const cache = LinkCache.make({ lookup: (hash) => Effect.suspend(() => (lookups.push(hash), Deferred.await(answer))) })
      const get = (hash: string) => Effect.provideService(cache.get(hash), SqlClient.SqlClient, undefined as never)
      const waiting = yield* Effect.forEach(Array.from({ length: 10 }), () => Effect.fork(get("live")))
      yield* Effect.yieldNow()
      expect(cache.looking("live")).toBe(true)
      yield* Deferred.succeed(answer, row)
      for (const fiber of waiting) expect(yield* Fiber.join(fiber)).toBe(row)
      expect(lookups).toEqual(["live"])
      expect(cache.looking("live")).toBe(false)
    }))

  it.effect("an interrupted lookup leaves those waiting for it a failure, not an interruption", () =>
    Effect.gen(function*() {
      const answer = yield* Deferred.make<Links.Row>()
      const cache = LinkCache.make({ lookup: () => Deferred.await(answer) })
      const get = (hash: string) => Effect.provideService(cache.get(hash), SqlClient.SqlClient, undefined as never)
      const first = yield* Effect.fork(get("live"))
      yield* Effect.yieldNow()
      const second = yield* Effect.fork(get("live"))
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(first)
      const exit = yield* Fiber.await(second)
      expect(Exit.isFailure(exit) && !Exit.isInterrupted(exit)).toBe(true)
      // The next request looks the link up anew.
      expect(cache.looking("live")).toBe(false)
    }))

  it.effect("reads a live link again ahead of its expiry, once per copy and second, keeping the new copy", () =>
    Effect.gen(function*() {
      const { advance, cache, get, lookups } = counted()
      const refresh = (hash: string) => Effect.provideService(cache.refresh(hash), SqlClient.SqlClient, undefined as never)
      yield* get("live")
      advance(2_999)
      expect(cache.refreshDue("live")).toBe(false)
      advance(1)
      expect(cache.refreshDue("live")).toBe(true)
      // Asked once: the requests after it are served from the copy.
      expect(cache.refreshDue("live")).toBe(false)
      advance(999)
      expect(cache.refreshDue("live")).toBe(false)
      advance(1)
      expect(cache.refreshDue("live")).toBe(true)
      expect(yield* refresh("live")).toBe(row)
      expect(lookups).toEqual(["live", "live"])
      // The new copy is fresh from now: 4 s on, the old one would have expired.
      expect(cache.known("live")).toEqual({ row, at: 4_000 })
      advance(2_000)
      expect(cache.refreshDue("live")).toBe(false)
      expect(yield* get("live")).toBe(row)
      expect(lookups).toHaveLength(2)
      // A token with no link is not read ahead: it is forgotten after its time.
      yield* get("guess")
      advance(4_000)
      expect(cache.refreshDue("guess")).toBe(false)
    }))
})
