/**
 * Verification of the event log's hash chain: recomputes every hash from position 1, checks that positions have no
 * gaps and that each event links to its predecessor, and names the first position where the chain breaks.
 */
import { Effect, Fiber } from "effect"
import { EventLog, type EventLogError, type RawEvent } from "../core/EventLog.ts"
import { GENESIS_HASH, hashEnvelope } from "../core/HashChain.ts"

/** The outcome of a verification. */
export type VerifyResult =
  | { readonly ok: true; readonly count: number; readonly headHash: string }
  | {
      readonly ok: false
      readonly count: number
      /** First position at which the chain does not hold. */
      readonly position: number
      readonly reason: "hash_mismatch" | "broken_link" | "gap"
      readonly message: string
    }

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex")

/** Checks one event against the expected position and previous hash; undefined when it holds. */
export const checkEvent = (
  e: RawEvent,
  expectedPosition: number,
  prevHash: Uint8Array
): Extract<VerifyResult, { ok: false }> | undefined => {
  const count = expectedPosition - 1
  if (e.position !== expectedPosition) {
    return {
      ok: false,
      count,
      position: expectedPosition,
      reason: "gap",
      message: `position ${expectedPosition} is missing (next stored position is ${e.position})`
    }
  }
  if (!Buffer.from(e.prevHash).equals(Buffer.from(prevHash))) {
    return {
      ok: false,
      count,
      position: e.position,
      reason: "broken_link",
      message: `position ${e.position} does not link to the hash of position ${e.position - 1}`
    }
  }
  const computed = hashEnvelope(e)
  if (!computed.equals(Buffer.from(e.hash))) {
    return {
      ok: false,
      count,
      position: e.position,
      reason: "hash_mismatch",
      message: `position ${e.position} was altered: stored hash ${hex(e.hash).slice(0, 16)}… recomputes to ${computed.toString("hex").slice(0, 16)}…`
    }
  }
  return undefined
}

/**
 * Verifies the whole chain, reading pages of `pageSize` while hashing the previous page. `onProgress` is called after
 * each page with the number of events verified so far.
 */
export const verify = Effect.fn("Audit.verify")(function* (
  options: { readonly pageSize?: number; readonly onProgress?: (count: number) => Effect.Effect<void> } = {}
) {
  const log = yield* EventLog
  const pageSize = options.pageSize ?? 10_000
  let prevHash: Uint8Array = GENESIS_HASH
  let expected = 1
  let page = yield* log.readRaw(0, pageSize)
  while (page.length > 0) {
    // Fetch the next page while this one is hashed: the two costs are about equal, so this nearly halves the time.
    const last = page[page.length - 1]!.position
    const next = yield* Effect.fork(page.length < pageSize ? Effect.succeed<ReadonlyArray<RawEvent>>([]) : log.readRaw(last, pageSize))
    for (const e of page) {
      const broken = checkEvent(e, expected, prevHash)
      if (broken) {
        yield* Fiber.interrupt(next)
        return broken as VerifyResult
      }
      prevHash = e.hash
      expected += 1
    }
    if (options.onProgress) yield* options.onProgress(expected - 1)
    page = yield* Fiber.join(next)
  }
  return { ok: true, count: expected - 1, headHash: hex(prevHash) } as VerifyResult
}) as (options?: {
  readonly pageSize?: number
  readonly onProgress?: (count: number) => Effect.Effect<void>
}) => Effect.Effect<VerifyResult, EventLogError, EventLog>
