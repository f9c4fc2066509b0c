/**
 * Console sessions: an API key exchanged for a random session id that the browser holds in an HttpOnly cookie. The
 * hub keeps, in memory and only for the session's life, the SHA-256 of the id with the key's id, workspace and scope
 * — never the key and never the id itself — so a restart signs every console out. Each sign-in and each end of a
 * session (signed out; presented after it expired or after its key was revoked) is one event on the log; refused
 * sign-ins go through SignInFailures.ts. A session reads exactly what its key reads: the API's handlers see the same
 * `ApiKeyCaller` as for a bearer key (hub/http/AgentApi.ts).
 */
import { randomBytes } from "node:crypto"
import type { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Config, Context, Data, Effect, Layer, Option, Schedule } from "effect"
import { EventLog, type EventLogError, type VersionConflict } from "../../core/EventLog.ts"
import { ConsoleSignedIn, ConsoleSignedOut, type ConsoleSignOutReason, EventMeta } from "../../core/Events.ts"
import { ApiKeyId } from "../../core/Ids.ts"
import { looksLikeApiKey, sha256Hex } from "../../core/Secrets.ts"
import { DEFAULT_DENIAL_WINDOW_MS, HubConfig } from "../HubConfig.ts"
import * as FactRecorder from "../eventlog/FactRecorder.ts"
import { HubSpool } from "../relay/HubSpool.ts"
import * as ApiKeys from "../readmodels/ApiKeys.ts"
import * as SignInFailures from "./SignInFailures.ts"

/** The cookie that carries a session id. */
export const COOKIE = "connect_console"

/** Sessions held at once; past it a sign-in is refused until one ends (memory stays bounded). */
export const MAX_SESSIONS = 10_000

/** One signed-in console. */
export interface Session {
  readonly apiKeyId: string
  readonly workspaceId: string
  readonly scope: "workspace" | "operator"
  /** The first 16 hex characters of the id's SHA-256: what the log names the session by. */
  readonly ref: string
  readonly createdAt: number
  readonly expiresAt: number
  /** Who signed in: the meta of the session's end when the hub ends it itself (expired). */
  readonly from: Presenter
}

/** Who presented a key or a cookie: address and user agent (sanitised and capped). */
export interface Presenter {
  readonly ip: string
  readonly userAgent?: string | undefined
}

/** A refused sign-in, with what the form shows. */
export class SignInRefused extends Data.TaggedError("SignInRefused")<{
  readonly reason: "unknown_api_key" | "revoked_api_key" | "rate_limited" | "full"
  readonly message: string
}> {}

type Failure = EventLogError | VersionConflict | SqlError

/** The hub's console sessions. */
export class ConsoleSessions extends Context.Tag("connect/hub/ConsoleSessions")<ConsoleSessions, {
  /** How long a session lasts from its sign-in, in ms (`CONNECT_CONSOLE_SESSION_SECONDS`, default 8 hours). */
  readonly ttlMs: number
  /** Exchanges an API key for a session: its id (for the cookie, shown nowhere else) and the session. */
  readonly signIn: (
    key: string,
    from: Presenter
  ) => Effect.Effect<{ readonly id: string; readonly session: Session }, SignInRefused | Failure>
  /** The live session of a cookie's id; one expired or whose key was revoked is ended (and recorded) instead. */
  readonly current: (id: string, from: Presenter) => Effect.Effect<Option.Option<Session>, Failure>
  /** Ends the session of a cookie's id (recorded); false when there was none. */
  readonly signOut: (id: string, from: Presenter) => Effect.Effect<boolean, Failure>
}>() {}

const metaOf = (apiKeyId: string, from: Presenter) =>
  new EventMeta({
    actor: { kind: "apikey", id: apiKeyId },
    sourceIp: from.ip,
    ...(from.userAgent ? { userAgent: from.userAgent } : {})
  })

/** The stream of one key's console sessions. */
export const streamOf = (apiKeyId: string) => `console-${apiKeyId}`

/** Makes the sessions, with `ttlMs` and the sign-in limiter's options. */
export const make = (
  ttlMs: number,
  limits: SignInFailures.SignInFailuresOptions = {}
) =>
  Effect.gen(function*() {
    const log = yield* EventLog
    const context = yield* Effect.context<SqlClient.SqlClient>()
    const failures = yield* SignInFailures.make(limits)
    const sessions = new Map<string, Session>()

    // An operator key's console is about every workspace: its events are hub-level, as its reads are (ApiRead.ts).
    const workspaceOf = (s: Session) => (s.scope === "operator" ? null : s.workspaceId)

    const end = (hash: string, s: Session, reason: typeof ConsoleSignOutReason.Type, from: Presenter) =>
      Effect.suspend((): Effect.Effect<unknown, EventLogError | VersionConflict> => {
        // Ended once: a request and the sweep may both find it expired.
        if (!sessions.delete(hash)) return Effect.void
        return log.append(streamOf(s.apiKeyId), [
          new ConsoleSignedOut({
            apiKeyId: ApiKeyId.make(s.apiKeyId),
            session: s.ref,
            reason,
            durationMs: Math.max(0, Math.min(Date.now(), s.expiresAt) - s.createdAt)
          })
        ], { expectedVersion: "any", workspaceId: workspaceOf(s), meta: metaOf(s.apiKeyId, from) })
      }).pipe(Effect.asVoid)

    const signIn = (key: string, from: Presenter) =>
      Effect.gen(function*() {
        if (failures.limited(from.ip, from.userAgent)) {
          return yield* new SignInRefused({ reason: "rate_limited", message: "too many refused sign-ins from this address; try later" })
        }
        const wellFormed = looksLikeApiKey(key)
        const row = wellFormed ? yield* ApiKeys.byHash(sha256Hex(key)) : undefined
        if (!row || row.revoked_at) {
          const reason = row ? "revoked_api_key" as const : "unknown_api_key" as const
          yield* failures.record({
            reason,
            ip: from.ip,
            userAgent: from.userAgent,
            apiKeyId: row?.id,
            workspaceId: row?.workspace_id,
            keyPrefix: wellFormed ? key.slice(0, 8) : undefined
          })
          return yield* new SignInRefused({ reason, message: row ? "this API key has been revoked" : "unknown API key" })
        }
        const now = Date.now()
        for (const [hash, s] of sessions) if (s.expiresAt <= now) yield* end(hash, s, "expired", from)
        if (sessions.size >= MAX_SESSIONS) {
          return yield* new SignInRefused({ reason: "full", message: "the hub holds too many console sessions; try later" })
        }
        const id = randomBytes(32).toString("hex")
        const hash = sha256Hex(id)
        const session: Session = {
          apiKeyId: row.id,
          workspaceId: row.workspace_id,
          scope: row.scope,
          ref: hash.slice(0, 16),
          createdAt: now,
          expiresAt: now + ttlMs,
          from
        }
        // Recorded before the session exists: a sign-in the log cannot take does not happen.
        yield* log.append(streamOf(row.id), [
          new ConsoleSignedIn({
            apiKeyId: ApiKeyId.make(row.id),
            session: session.ref,
            scope: row.scope,
            expiresAt: new Date(session.expiresAt)
          })
        ], { expectedVersion: "any", workspaceId: workspaceOf(session), meta: metaOf(row.id, from) })
        sessions.set(hash, session)
        return { id, session }
      }).pipe(Effect.provide(context))

    const current = (id: string, from: Presenter) =>
      Effect.gen(function*() {
        if (!/^[0-9a-f]{64}$/.test(id)) return Option.none<Session>()
        const hash = sha256Hex(id)
        const s = sessions.get(hash)
        if (s === undefined) return Option.none<Session>()
        if (s.expiresAt <= Date.now()) {
          yield* end(hash, s, "expired", from)
          return Option.none<Session>()
        }
        const key = yield* ApiKeys.byId(s.apiKeyId)
        if (key === undefined || key.revoked_at !== null) {
          yield* end(hash, s, "key_revoked", from)
          return Option.none<Session>()
        }
        return Option.some(s)
      }).pipe(Effect.provide(context))

    const signOut = (id: string, from: Presenter) =>
      Effect.suspend(() => {
        const hash = /^[0-9a-f]{64}$/.test(id) ? sha256Hex(id) : ""
        const s = sessions.get(hash)
        return s === undefined ? Effect.succeed(false) : Effect.as(end(hash, s, "signed_out", from), true)
      })

    // A browser drops the cookie when its Max-Age ends and never presents it again: the hub ends expired sessions
    // itself, checking every second, so that each expiry is on the log when it happens.
    const sweep = Effect.suspend(() => {
      const now = Date.now()
      const due = [...sessions].filter(([, s]) => s.expiresAt <= now)
      return Effect.forEach(due, ([hash, s]) =>
        end(hash, s, "expired", s.from).pipe(
          Effect.catchAll((e) => Effect.logWarning("console: an expired session's end was not recorded", e))
        ), { discard: true })
    })
    yield* Effect.repeat(sweep, Schedule.spaced("1 second")).pipe(Effect.forkScoped)

    return ConsoleSessions.of({ ttlMs, signIn, current, signOut })
  })

/** `CONNECT_CONSOLE_SESSION_SECONDS` (default 28,800: 8 hours); sign-in refusals coalesced per the hub's `--denial-window`. */
export const layerConfig: Layer.Layer<ConsoleSessions, never, EventLog | SqlClient.SqlClient | HubConfig | HubSpool> = Layer.scoped(
  ConsoleSessions,
  Effect.gen(function*() {
    const seconds = yield* Config.integer("CONNECT_CONSOLE_SESSION_SECONDS").pipe(
      Config.withDefault(28_800),
      Config.validate({
        message: "CONNECT_CONSOLE_SESSION_SECONDS must be a whole number of seconds from 1 to 604800",
        validation: (n) => n >= 1 && n <= 604_800
      }),
      Effect.orDie
    )
    const config = yield* HubConfig
    // A window's aggregated refusals are facts: appended, or spooled while the log is unavailable, never only logged.
    const facts = yield* FactRecorder.make(yield* HubSpool)
    return yield* make(seconds * 1000, { windowMs: config.denialWindowMs ?? DEFAULT_DENIAL_WINDOW_MS, record: facts.record })
  })
)
