/**
 * Verification of the event log's hash chain: recomputes every hash from position 1 (or over a range, the stored hash
 * before it taken as given), checks that positions have no gaps and that each event links to its predecessor's stored
 * hash, and names every position where the chain breaks. Links are checked against stored hashes, so one altered
 * event is one break, not a break from there on.
 */
import { createHash } from "node:crypto"
import { Effect, Stream } from "effect"
import { type ChainLink, EventLog, type EventLogError, pagesAhead } from "../core/EventLog.ts"
import { GENESIS_HASH } from "../core/HashChain.ts"

/** One place where the chain does not hold. */
export interface Break {
  /** The altered or unlinked position, or the first missing one. */
  readonly position: number
  readonly reason: "hash_mismatch" | "broken_link" | "gap"
  /** For a gap: the last missing position. */
  readonly through?: number
  readonly message: string
}

/** The outcome of a verification. */
export type VerifyResult =
  | {
      readonly ok: true
      readonly count: number
      /** The stored hash at the last position verified. */
      readonly headHash: string
      /** The positions verified (1 and the head for the whole log). */
      readonly from: number
      readonly to: number
    }
  | {
      readonly ok: false
      /** Events verified before the first break. */
      readonly count: number
      /** First position at which the chain does not hold. */
      readonly position: number
      readonly reason: Break["reason"]
      readonly message: string
      /** Every break, in position order (at most {@link MAX_BREAKS}). */
      readonly breaks: ReadonlyArray<Break>
      /** Whether verification stopped at {@link MAX_BREAKS} breaks. */
      readonly truncated: boolean
      readonly from: number
      readonly to: number
    }

/** Verification stops after this many breaks: a log rewritten wholesale need not be listed row by row. */
export const MAX_BREAKS = 1000

const gap = (position: number, through: number, detail?: string): Break => ({
  position,
  reason: "gap",
  through,
  message: (through === position ? `position ${position} is missing` : `positions ${position}-${through} are missing`) +
    (detail ? ` (${detail})` : "")
})

const unlinked = (position: number): Break => ({
  position,
  reason: "broken_link",
  message: `position ${position} does not link to the hash of position ${position - 1}`
})

const altered = (position: number, detail?: string): Break => ({
  position,
  reason: "hash_mismatch",
  message: `position ${position} was altered` + (detail ? ` (${detail})` : "")
})

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex")

/** sha256(prev_hash || canonical) of a link, over its own stored prev_hash. */
const recompute = (link: ChainLink, prevHash: Uint8Array = Buffer.from(link.prevHash, "hex")): Buffer =>
  createHash("sha256").update(prevHash).update(link.canonical, "utf8").digest()

/** A hash_mismatch for `link` if its stored hash is not the one recomputed from its stored values. */
const checkHash = (link: ChainLink): Break | undefined => {
  const computed = hex(recompute(link))
  return computed === link.hash
    ? undefined
    : altered(link.position, `stored hash ${link.hash.slice(0, 16)}… recomputes to ${computed.slice(0, 16)}…`)
}

/** Breaks in order, adjacent gaps (found by two ranges) merged into one. */
const merge = (breaks: ReadonlyArray<Break>): Array<Break> => {
  const out: Array<Break> = []
  for (const b of breaks) {
    const last = out[out.length - 1]
    if (last?.reason === "gap" && b.reason === "gap" && b.position <= last.through! + 1) {
      out[out.length - 1] = gap(last.position, Math.max(last.through!, b.through!))
    } else {
      out.push(b)
    }
  }
  return out
}

const result = (breaks: ReadonlyArray<Break>, from: number, to: number, headHash: string): VerifyResult => {
  if (breaks.length === 0) return { ok: true, count: Math.max(0, to - from + 1), headHash, from, to }
  const listed = merge(breaks).slice(0, MAX_BREAKS)
  const first = listed[0]!
  return {
    ok: false,
    count: Math.max(0, first.position - from),
    position: first.position,
    reason: first.reason,
    message: first.message,
    breaks: listed,
    truncated: breaks.length >= MAX_BREAKS,
    from,
    to
  }
}

/** Options of {@link verify}. */
export interface VerifyOptions {
  /** Events per page (default 10,000 in this process, 100,000 in the database). */
  readonly pageSize?: number
  /** Called after each page with the number of events verified so far and the number to verify. */
  readonly onProgress?: (count: number, total: number) => Effect.Effect<void>
  /** First position to verify (default 1); the stored hash before it is taken as given. */
  readonly from?: number
  /** Last position to verify (default: the head). Past the head, the positions missing up to it are a gap. */
  readonly to?: number
  /**
   * Recompute every hash in this process from the rows as read, rather than have the database recompute them. 3-5x
   * slower (measured); it trusts nothing of the server but the rows it returns.
   */
  readonly independent?: boolean
}

/** Verifies the chain (or a range); by default the database recomputes it, two ranges at a time (see `checkChain`). */
export const verify = (options: VerifyOptions = {}): Effect.Effect<VerifyResult, EventLogError, EventLog> =>
  (options.independent ? verifyHere(options) : verifyInDatabase(options)).pipe(
    Effect.withSpan("Audit.verify", { attributes: { independent: options.independent === true } })
  )

/**
 * Every break in positions `after+1..upTo`. `checkChain` names only the first break of a range, so the range is
 * re-checked from each break on; what it cannot tell (the start of a gap that began before the range, the hash of a
 * row that does not link or follows a gap) is read here for those few rows.
 */
const breaksInRange = (log: EventLog["Type"], after: number, upTo: number) =>
  Effect.gen(function* () {
    const breaks: Array<Break> = []
    const linkAfter = (position: number) => Effect.map(log.readLinks(position, 1), (links) => links[0])
    let cursor = after
    while (breaks.length < MAX_BREAKS) {
      const b = yield* log.checkChain(cursor, upTo)
      if (!b) break
      if (b.reason === "gap") {
        // Row `cursor` itself is missing: the gap began at or before it; find the last stored position before it.
        const start = b.position === cursor && cursor > 0 ? (yield* lastStoredBefore(log, cursor)) + 1 : b.position
        const next = yield* linkAfter(b.position)
        if (!next) break
        breaks.push(gap(start, next.position - 1))
        const hash = checkHash(next)
        if (hash) breaks.push(hash)
        cursor = next.position
      } else {
        breaks.push(b.reason === "broken_link" ? unlinked(b.position) : altered(b.position))
        if (b.reason === "broken_link") {
          const link = yield* linkAfter(b.position - 1)
          const hash = link && checkHash(link)
          if (hash) breaks.push(hash)
        }
        cursor = b.position
      }
    }
    return breaks
  })

/** The last stored position below `position` (0 when none), by bisection over "first stored position after x". */
const lastStoredBefore = (log: EventLog["Type"], position: number) =>
  Effect.gen(function* () {
    // Smallest x with nothing stored in (x, position]: hi always has that property, lo (from -1) never.
    let lo = -1
    let hi = position
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2)
      const [first] = yield* log.readLinks(mid, 1)
      if (first !== undefined && first.position <= position) lo = mid
      else hi = mid
    }
    return hi
  })

/** The positions to verify: `from..to` of the options, `to` cut at the head (what lies past it is a gap). */
const bounds = (log: EventLog["Type"], options: VerifyOptions) =>
  Effect.map(log.head, (head) => {
    const from = Math.max(1, options.from ?? 1)
    const to = options.to ?? head.position
    return { from, to, stored: Math.min(to, head.position), head }
  })

/** The stored hash at `position` (the genesis hash before position 1, empty when the row is missing). */
const storedHash = (log: EventLog["Type"], position: number) =>
  position === 0
    ? Effect.succeed(hex(GENESIS_HASH))
    : Effect.map(log.readLinks(position - 1, 1), (links) => (links[0]?.position === position ? links[0].hash : ""))

/** The missing tail between the head and a `to` past it. */
const missingTail = (stored: number, to: number, from: number): Array<Break> =>
  to > stored ? [gap(Math.max(stored + 1, from), to, `the log ends at position ${stored}`)] : []

const verifyInDatabase = (options: VerifyOptions) =>
  Effect.gen(function* () {
    const log = yield* EventLog
    const pageSize = options.pageSize ?? 100_000
    const { from, to, stored } = yield* bounds(log, options)
    const total = Math.max(0, to - from + 1)
    const ranges: Array<readonly [number, number]> = []
    for (let after = from - 1; after < stored; after += pageSize) ranges.push([after, Math.min(after + pageSize, stored)])
    const breaks: Array<Break> = []
    // Two ranges in flight, each one server process's work; results come in order, so breaks are listed in order.
    yield* Stream.fromIterable(ranges).pipe(
      Stream.mapEffect(([after, upTo]) => Effect.map(breaksInRange(log, after, upTo), (b) => [upTo, b] as const), {
        concurrency: 2
      }),
      Stream.runForEachWhile(([upTo, found]) => {
        breaks.push(...found)
        if (breaks.length >= MAX_BREAKS) return Effect.succeed(false)
        return options.onProgress ? Effect.as(options.onProgress(upTo - from + 1, total), true) : Effect.succeed(true)
      })
    )
    breaks.push(...missingTail(stored, to, from))
    return result(breaks, from, to, yield* storedHash(log, to))
  })

const verifyHere = (options: VerifyOptions) =>
  Effect.gen(function* () {
    const log = yield* EventLog
    const { from, to, stored } = yield* bounds(log, options)
    const total = Math.max(0, to - from + 1)
    // The previous row's stored hash, as bytes and hex; the bytes are the recomputed hash whenever it matched. Before
    // a range, the stored hash is taken as given.
    let prevHashHex = yield* storedHash(log, from - 1)
    let prevHash: Uint8Array = Buffer.from(prevHashHex, "hex")
    let expected = from
    const breaks: Array<Break> = []
    yield* pagesAhead(log.readLinks, options.pageSize ?? 10_000, from - 1).pipe(
      Stream.runForEachWhile((page) =>
        Effect.suspend(() => {
          for (const link of page) {
            if (link.position > to) return Effect.succeed(false)
            if (prevHashHex === "") {
              // The row before the range is missing: the first row's own stored prev_hash is taken as given.
              prevHashHex = link.prevHash
              prevHash = Buffer.from(link.prevHash, "hex")
            }
            let linked = true
            if (link.position !== expected) {
              breaks.push(gap(expected, link.position - 1, `next stored position is ${link.position}`))
              linked = false
            } else if (link.prevHash !== prevHashHex) {
              breaks.push(unlinked(link.position))
              linked = false
            }
            // Each row is hashed over its own stored prev_hash, as Postgres does: a bad link is not also a bad hash.
            const computed = recompute(link, linked ? prevHash : Buffer.from(link.prevHash, "hex"))
            const computedHex = computed.toString("hex")
            if (computedHex !== link.hash) {
              breaks.push(
                altered(link.position, `stored hash ${link.hash.slice(0, 16)}… recomputes to ${computedHex.slice(0, 16)}…`)
              )
              prevHash = Buffer.from(link.hash, "hex")
            } else {
              prevHash = computed
            }
            prevHashHex = link.hash
            expected = link.position + 1
            if (breaks.length >= MAX_BREAKS) return Effect.succeed(false)
          }
          return options.onProgress ? Effect.as(options.onProgress(expected - from, total), true) : Effect.succeed(true)
        })
      )
    )
    breaks.push(...missingTail(Math.min(stored, expected - 1), to, from))
    return result(breaks, from, to, prevHashHex)
  })
