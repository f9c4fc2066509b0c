/**
 * Refused console sign-ins per source address, recorded as `ConsoleSignInFailed` the way AuthFailures.ts records
 * refused API keys: one by one while the address has tokens, then counted per address and reason and written once per
 * window (count, first and last refusal). While an address is over its limit its attempts are refused at once, without
 * a look-up, so guessing keys at the sign-in form costs the database nothing until the window ends.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import { type AppendOptions, EventLog, type EventLogError, type VersionConflict } from "../../core/EventLog.ts"
import { ConsoleSignInFailed, type ConsoleSignInFailureReason, type Event, EventMeta } from "../../core/Events.ts"
import { ApiKeyId } from "../../core/Ids.ts"
import { recordableEvent, recordableMeta } from "../../core/RecordableEvent.ts"
import * as TokenBucket from "../../core/TokenBucket.ts"
import * as Windows from "../../core/Windows.ts"
import { addressKey } from "../http/AuthFailures.ts"

/** Stream of refused console sign-ins. */
export const SIGN_IN_FAILURE_STREAM = "console-signin"

/** One refused sign-in; `userAgent` already sanitised and capped. */
export interface SignInFailure {
  readonly reason: typeof ConsoleSignInFailureReason.Type
  readonly ip: string
  readonly userAgent?: string | undefined
  readonly apiKeyId?: string | undefined
  readonly workspaceId?: string | undefined
  readonly keyPrefix?: string | undefined
}

/** The limiter and coalescer of refused sign-ins. */
export interface SignInFailures {
  /** Whether `ip` is over its limit; if so the attempt is counted as `rate_limited` and must be refused unlooked-up. */
  readonly limited: (ip: string, userAgent?: string) => boolean
  /** Records a refusal: appended now while its address is within its limit, else counted into its window. */
  readonly record: (failure: SignInFailure) => Effect.Effect<void, EventLogError | VersionConflict>
}

interface Window {
  failure: SignInFailure
  readonly startedAt: number
  count: number
  lastAt: number
}

/** Options of `make` (tests shorten them). */
export interface SignInFailuresOptions {
  /** Refusals recorded one by one before the address is limited (default 10). */
  readonly burst?: number
  /** Allowance regained per second (default 0.1). */
  readonly perSecond?: number
  /** Coalescing window, in ms (default 10,000). */
  readonly windowMs?: number
  /**
   * How long an address over its limit stays locked out, in ms (default the window, but never less than 10,000: a
   * short window must not let a guesser through every second).
   */
  readonly lockoutMs?: number
  /**
   * How a window's aggregated event is recorded (default: appended to the log). The hub passes its FactRecorder's, so
   * that a window ending while the log is unavailable is spooled and appended on recovery, never only logged.
   */
  readonly record?: (stream: string, event: Event, options: AppendOptions) => Effect.Effect<void, unknown>
}

/** Makes the limiter; its scope writes every open window when it closes. */
export const make = (options: SignInFailuresOptions = {}): Effect.Effect<SignInFailures, never, EventLog | Scope.Scope> =>
  Effect.gen(function*() {
    const log = yield* EventLog
    const windowMs = options.windowMs ?? 10_000
    const lockoutMs = options.lockoutMs ?? Math.max(windowMs, 10_000)
    const now = Date.now
    const buckets = TokenBucket.make({ burst: options.burst ?? 10, perSecond: options.perSecond ?? 0.1, now })
    const limitedSince = new Map<string, number>()

    // The event of one refusal, or of a window's refusals with their count and first and last time.
    const toAppend = (failure: SignInFailure, window?: Window): [Event, AppendOptions] => [
      recordableEvent(
        new ConsoleSignInFailed({
          ...(failure.apiKeyId ? { apiKeyId: ApiKeyId.make(failure.apiKeyId) } : {}),
          ...(failure.keyPrefix ? { keyPrefix: failure.keyPrefix } : {}),
          reason: failure.reason,
          ip: failure.ip,
          ...(window ? { count: window.count, firstAt: new Date(window.startedAt), lastAt: new Date(window.lastAt) } : {})
        })
      ),
      {
        expectedVersion: "any",
        workspaceId: failure.workspaceId ?? null,
        meta: recordableMeta(
          new EventMeta({
            actor: failure.apiKeyId ? { kind: "apikey", id: failure.apiKeyId } : { kind: "public" },
            sourceIp: failure.ip,
            ...(failure.userAgent ? { userAgent: failure.userAgent } : {})
          })
        )
      }
    ]
    const append = (failure: SignInFailure) => {
      const [event, appendOptions] = toAppend(failure)
      return log.append(SIGN_IN_FAILURE_STREAM, [event], appendOptions).pipe(Effect.asVoid)
    }
    const recordWindow = (w: Window) => {
      const [event, appendOptions] = toAppend(w.failure, w)
      return options.record
        ? options.record(SIGN_IN_FAILURE_STREAM, event, appendOptions)
        : log.append(SIGN_IN_FAILURE_STREAM, [event], appendOptions).pipe(Effect.asVoid)
    }

    const windows = yield* Windows.make<Window>({
      windowMs,
      now,
      write: (w) =>
        recordWindow(w).pipe(
          Effect.catchAll((e) => Effect.logWarning("console: an aggregated sign-in refusal was not recorded", e))
        ),
      tick: (t) => {
        for (const [key, since] of limitedSince) if (t - since >= lockoutMs) limitedSince.delete(key)
      }
    })

    const count = (failure: SignInFailure) => {
      const { window: open, fresh } = windows.at(
        `${addressKey(failure.ip)}\0${failure.reason}`,
        (t) => ({ failure, startedAt: t, count: 1, lastAt: t })
      )
      if (fresh) return
      open.count++
      open.lastAt = now()
      // One window may cover attempts with several keys: it then names none of them.
      if (open.failure.apiKeyId !== failure.apiKeyId || open.failure.workspaceId !== failure.workspaceId) {
        open.failure = { reason: failure.reason, ip: failure.ip }
      }
    }

    return {
      limited: (ip, userAgent) => {
        const since = limitedSince.get(addressKey(ip))
        if (since === undefined || now() - since >= lockoutMs) return false
        count({ reason: "rate_limited", ip, ...(userAgent ? { userAgent } : {}) })
        return true
      },
      record: (failure) =>
        Effect.suspend(() => {
          const address = addressKey(failure.ip)
          if (buckets.take(address)) return append(failure)
          limitedSince.set(address, now())
          count(failure)
          return Effect.void
        })
    }
  })
