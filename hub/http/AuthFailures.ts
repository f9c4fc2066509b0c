/**
 * Failed authentication per source address: a stranger guessing agent tokens or API keys must not be able to write
 * one event per guess (each one a write every other tenant's append waits behind, and megabytes of log for a few
 * seconds of effort). An address's refusals take from a token bucket and are appended one by one while it has
 * tokens; past its limit they are counted, per address, kind and reason, and each window ends in one event with
 * the count and the window's first and last refusal. While an address is over its limit, its attempts are refused
 * at once without being looked up (`limited`): a flood costs the database nothing until the window ends. An IPv6
 * address is counted by its /64, and its /48 has an allowance of its own: past it, the /48's refusals are coalesced
 * the same way (but not refused unlooked: its other hosts are not the guesser).
 */
import * as Net from "node:net"
import { Duration, Effect } from "effect"
import type { Scope } from "effect"
import { type AppendOptions, EventLog, type EventLogError, type VersionConflict } from "../../core/EventLog.ts"
import {
  AgentAuthFailed,
  type ApiKeyAuthFailureReason,
  ApiKeyAuthFailed,
  type AuthFailureReason,
  type Event,
  EventMeta
} from "../../core/Events.ts"
import { AgentId, ApiKeyId, Streams } from "../../core/Ids.ts"
import { recordableEvent, recordableMeta } from "../../core/RecordableEvent.ts"
import * as TokenBucket from "../../core/TokenBucket.ts"
import * as Windows from "../../core/Windows.ts"

/** Stream of refusals of tokens that match no agent (there is no agent stream to put them on). */
export const UNKNOWN_TOKEN_STREAM = "auth-unknown"

/** Stream of refused API keys (a key's own events may live in its workspace's stream). */
export const API_KEY_FAILURE_STREAM = "auth-apikey"

/** What was presented: an agent token (relay Hello, agent HTTP routes) or an API key. */
export type Kind = "agent" | "apikey"

/** Who and what a refusal concerns; `userAgent` must already be sanitised and capped. */
interface FailureBase {
  readonly ip: string
  readonly workspaceId?: string | undefined
  readonly userAgent?: string | undefined
}

/** A refused agent token. */
export interface AgentFailure extends FailureBase {
  readonly kind: "agent"
  readonly reason: typeof AuthFailureReason.Type
  readonly agentId?: AgentId | undefined
  readonly tokenPrefix?: string | undefined
}

/** A refused API key. */
export interface ApiKeyFailure extends FailureBase {
  readonly kind: "apikey"
  readonly reason: typeof ApiKeyAuthFailureReason.Type
  readonly apiKeyId?: string | undefined
  readonly keyPrefix?: string | undefined
}

/** A refused credential. */
export type Failure = AgentFailure | ApiKeyFailure

/** Options of `make`. */
export interface AuthFailuresOptions {
  /** Refusals an address may have recorded one by one before it is limited (default 10). */
  readonly burst?: number
  /** How fast that allowance comes back, per second (default 0.1: one every 10 s). */
  readonly perSecond?: number
  /**
   * Refusals an IPv6 /48 may have recorded one by one (default 20): a holder of a /48 has 65,536 /64s, each with an
   * allowance of its own.
   */
  readonly blockBurst?: number
  /** How fast a /48's allowance comes back, per second (default 0.2). */
  readonly blockPerSecond?: number
  /** Length of a coalescing window, and of a limited address's lock-out (default 10 s). */
  readonly window?: Duration.DurationInput
  /** The clock in ms (default `Date.now`). */
  readonly now?: () => number
  /**
   * How a window's aggregated event is recorded (default: appended to the log). The relay's policy passes its
   * FactRecorder, which spools it while the log is unavailable: a refusal that happened is never only logged.
   */
  readonly record?: (stream: string, event: Event, options: AppendOptions) => Effect.Effect<void, unknown>
}

/** The limiter and coalescer. */
export interface AuthFailures {
  /**
   * Whether `ip` is over its limit for `kind`; if so this attempt is counted as `rate_limited` and must be refused
   * without looking the credential up.
   */
  readonly limited: (kind: Kind, ip: string, userAgent?: string) => boolean
  /** Records a refusal: appended now while its address is within its limit, else counted into its window. */
  readonly record: (failure: Failure) => Effect.Effect<void, EventLogError | VersionConflict>
  /** Windows open now. */
  readonly open: () => number
}

interface Window {
  /** The window's first refusal; its agent, key and workspace are dropped once another one differs. */
  failure: Failure
  readonly startedAt: number
  count: number
  lastAt: number
}

const subjectOf = (f: Failure) => (f.kind === "agent" ? f.agentId : f.apiKeyId)

/** `failure` as its event, its stream and the append options. */
const toAppend = (failure: Failure, window?: { count: number; firstAt: number; lastAt: number }) => {
  const coalesced = window
    ? { count: window.count, firstAt: new Date(window.firstAt), lastAt: new Date(window.lastAt) }
    : {}
  const event = failure.kind === "agent"
    ? new AgentAuthFailed({
      ...(failure.agentId ? { agentId: failure.agentId } : {}),
      ...(failure.tokenPrefix ? { tokenPrefix: failure.tokenPrefix } : {}),
      reason: failure.reason,
      ip: failure.ip,
      ...coalesced
    })
    : new ApiKeyAuthFailed({
      ...(failure.apiKeyId ? { apiKeyId: ApiKeyId.make(failure.apiKeyId) } : {}),
      ...(failure.keyPrefix ? { keyPrefix: failure.keyPrefix } : {}),
      reason: failure.reason,
      ip: failure.ip,
      ...coalesced
    })
  const subject = subjectOf(failure)
  const stream = failure.kind === "apikey"
    ? API_KEY_FAILURE_STREAM
    : failure.agentId
    ? Streams.agent(AgentId.make(failure.agentId))
    : UNKNOWN_TOKEN_STREAM
  const meta = new EventMeta({
    actor: subject ? { kind: failure.kind, id: subject } : { kind: "public" },
    sourceIp: failure.ip,
    ...(failure.userAgent ? { userAgent: failure.userAgent } : {})
  })
  return { stream, event, meta, workspaceId: failure.workspaceId ?? null }
}

/**
 * The address a refusal is counted under: an IPv6 address by its /64, which one host holds whole (SLAAC, privacy
 * addresses) and can make a fresh address of for every request; an IPv4 address as it is.
 */
export const addressKey = (ip: string): string => prefixKey(ip, 4)

/**
 * The block a refusal is also counted under: an IPv6 address's /48 (a site's allocation, or a tunnel broker's free
 * one: 65,536 /64s, each a fresh `addressKey`); an IPv4 address as it is (its `addressKey`).
 */
export const blockKey = (ip: string): string => prefixKey(ip, 3)

/** An IPv6 address's first `groups` groups as a prefix (`/16 × groups`); any other address as it is. */
const prefixKey = (ip: string, groups: number): string => {
  if (!Net.isIPv6(ip) || ip.includes(".")) return ip
  const [head = "", tail] = ip.split("::")
  const left = head === "" ? [] : head.split(":")
  const right = tail === undefined || tail === "" ? [] : tail.split(":")
  const all = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill("0"), ...right]
  return `${all.slice(0, groups).map((g) => parseInt(g, 16).toString(16)).join(":")}::/${groups * 16}`
}

/** Makes the limiter; its scope appends every open window when it closes. */
export const make = (
  options: AuthFailuresOptions = {}
): Effect.Effect<AuthFailures, never, EventLog | Scope.Scope> =>
  Effect.gen(function*() {
    const log = yield* EventLog
    const windowMs = Duration.toMillis(options.window ?? "10 seconds")
    const now = options.now ?? Date.now
    const buckets = TokenBucket.make({ burst: options.burst ?? 10, perSecond: options.perSecond ?? 0.1, now })
    const blocks = TokenBucket.make({ burst: options.blockBurst ?? 20, perSecond: options.blockPerSecond ?? 0.2, now })
    /** When each limited address (by kind) was last found over its limit. */
    const limitedSince = new Map<string, number>()

    const append = (failure: Failure, window?: Window) => {
      const a = toAppend(failure, window && { count: window.count, firstAt: window.startedAt, lastAt: window.lastAt })
      return log.append(a.stream, [recordableEvent(a.event)], {
        expectedVersion: "any",
        workspaceId: a.workspaceId,
        meta: recordableMeta(a.meta)
      }).pipe(Effect.asVoid)
    }

    const recordWindow = (w: Window) => {
      if (!options.record) return append(w.failure, w)
      const a = toAppend(w.failure, { count: w.count, firstAt: w.startedAt, lastAt: w.lastAt })
      return options.record(a.stream, recordableEvent(a.event), {
        expectedVersion: "any",
        workspaceId: a.workspaceId,
        meta: recordableMeta(a.meta)
      })
    }

    const windows = yield* Windows.make<Window>({
      windowMs,
      now,
      write: (w) =>
        recordWindow(w).pipe(
          Effect.catchAll((e) => Effect.logWarning("auth failures: an aggregated refusal was not recorded", e))
        ),
      tick: (t) => {
        for (const [key, since] of limitedSince) if (t - since >= windowMs) limitedSince.delete(key)
      }
    })

    /** Counts a refusal past a limit into the window of its kind, reason and `key` (its address, or its block). */
    const count = (failure: Failure, key: string = addressKey(failure.ip)) => {
      const { window: open, fresh } = windows.at(
        `${failure.kind}\0${key}\0${failure.reason}`,
        (t) => ({ failure, startedAt: t, count: 1, lastAt: t })
      )
      if (fresh) return
      open.count++
      open.lastAt = now()
      if (subjectOf(open.failure) !== subjectOf(failure) || open.failure.workspaceId !== failure.workspaceId) {
        open.failure = { kind: failure.kind, ip: failure.ip, reason: failure.reason } as Failure
      }
    }

    return {
      limited: (kind, ip, userAgent) => {
        const since = limitedSince.get(`${kind}\0${addressKey(ip)}`)
        if (since === undefined || now() - since >= windowMs) return false
        count({ kind, ip, reason: "rate_limited", ...(userAgent ? { userAgent } : {}) } as Failure)
        return true
      },
      record: (failure) =>
        Effect.suspend(() => {
          const address = `${failure.kind}\0${addressKey(failure.ip)}`
          if (!buckets.take(address)) {
            limitedSince.set(address, now())
            count(failure)
            return Effect.void
          }
          // Within its address's allowance but past its block's: coalesced under the block, still looked up next time.
          const block = blockKey(failure.ip)
          if (block !== addressKey(failure.ip) && !blocks.take(`${failure.kind}\0${block}`)) {
            count(failure, block)
            return Effect.void
          }
          return append(failure)
        }),
      open: windows.size
    }
  })
