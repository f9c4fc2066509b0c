/**
 * Verification of the event log's hash chain: recomputes every hash from position 1, checks that positions have no
 * gaps and that each event links to its predecessor, and names the first position where the chain breaks.
 */
import { createHash } from "node:crypto"
import { Effect, Stream } from "effect"
import { type ChainBreak, type ChainLink, EventLog, type EventLogError, pagesAhead } from "../core/EventLog.ts"
import { GENESIS_HASH } from "../core/HashChain.ts"

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

type Broken = Extract<VerifyResult, { ok: false }>

/** The result for a break; `detail` adds what only an in-process check knows. */
const describe = (b: ChainBreak, detail?: string): Broken => ({
  ok: false,
  count: b.position - 1,
  position: b.position,
  reason: b.reason,
  message: (b.reason === "gap"
    ? `position ${b.position} is missing`
    : b.reason === "broken_link"
    ? `position ${b.position} does not link to the hash of position ${b.position - 1}`
    : `position ${b.position} was altered`) + (detail ? ` (${detail})` : "")
})

/**
 * Checks one link against the expected position and the previous event's hash (as bytes and as stored hex); returns
 * the recomputed hash when it holds.
 */
const checkLink = (
  link: ChainLink,
  expectedPosition: number,
  prevHash: Uint8Array,
  prevHashHex: string
): Buffer | Broken => {
  if (link.position !== expectedPosition) {
    return describe({ position: expectedPosition, reason: "gap" }, `next stored position is ${link.position}`)
  }
  if (link.prevHash !== prevHashHex) return describe({ position: link.position, reason: "broken_link" })
  const computed = createHash("sha256").update(prevHash).update(link.canonical, "utf8").digest()
  const computedHex = computed.toString("hex")
  if (computedHex !== link.hash) {
    return describe(
      { position: link.position, reason: "hash_mismatch" },
      `stored hash ${link.hash.slice(0, 16)}… recomputes to ${computedHex.slice(0, 16)}…`
    )
  }
  return computed
}

/** Options of {@link verify}. */
export interface VerifyOptions {
  /** Events per page (default 10,000 in this process, 100,000 in the database). */
  readonly pageSize?: number
  /** Called after each page with the number of events verified so far. */
  readonly onProgress?: (count: number) => Effect.Effect<void>
  /**
   * Recompute every hash in this process from the rows as read, rather than have the database recompute them. 3-5x
   * slower (measured); it trusts nothing of the server but the rows it returns.
   */
  readonly independent?: boolean
}

/** Verifies the whole chain; by default the database recomputes it, two ranges at a time (see `checkChain`). */
export const verify = (options: VerifyOptions = {}): Effect.Effect<VerifyResult, EventLogError, EventLog> =>
  (options.independent ? verifyHere(options) : verifyInDatabase(options)).pipe(
    Effect.withSpan("Audit.verify", { attributes: { independent: options.independent === true } })
  )

const verifyInDatabase = (options: VerifyOptions) =>
  Effect.gen(function* () {
    const log = yield* EventLog
    const pageSize = options.pageSize ?? 100_000
    const head = yield* log.head
    const ranges: Array<readonly [number, number]> = []
    for (let after = 0; after < head.position; after += pageSize) ranges.push([after, Math.min(after + pageSize, head.position)])
    let broken: Broken | undefined
    // Two ranges in flight, each one server process's work; results come in order, so the first break found is the
    // first in the log, and stopping there interrupts the range still running.
    yield* Stream.fromIterable(ranges).pipe(
      Stream.mapEffect(([after, upTo]) => Effect.map(log.checkChain(after, upTo), (b) => [upTo, b] as const), {
        concurrency: 2
      }),
      Stream.runForEachWhile(([upTo, b]) => {
        if (b) {
          broken = describe(b)
          return Effect.succeed(false)
        }
        return options.onProgress ? Effect.as(options.onProgress(upTo), true) : Effect.succeed(true)
      })
    )
    return (broken ?? { ok: true, count: head.position, headHash: Buffer.from(head.hash).toString("hex") }) as VerifyResult
  })

const verifyHere = (options: VerifyOptions) =>
  Effect.gen(function* () {
    const log = yield* EventLog
    let prevHash: Uint8Array = GENESIS_HASH
    let prevHashHex = Buffer.from(GENESIS_HASH).toString("hex")
    let expected = 1
    let broken: Broken | undefined
    yield* pagesAhead(log.readLinks, options.pageSize ?? 10_000).pipe(
      Stream.runForEachWhile((page) =>
        Effect.suspend(() => {
          for (const link of page) {
            const checked = checkLink(link, expected, prevHash, prevHashHex)
            if (!Buffer.isBuffer(checked)) {
              broken = checked
              return Effect.succeed(false)
            }
            prevHash = checked
            prevHashHex = link.hash
            expected += 1
          }
          return options.onProgress ? Effect.as(options.onProgress(expected - 1), true) : Effect.succeed(true)
        })
      )
    )
    return (broken ?? { ok: true, count: expected - 1, headHash: prevHashHex }) as VerifyResult
  })
