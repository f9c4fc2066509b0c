/**
 * Console sessions on a real Postgres log: a sign-in is one `ConsoleSignedIn` (never the key, never the cookie), the
 * session reads as its key until it expires, is signed out or its key is revoked (each one `ConsoleSignedOut`), and
 * refused sign-ins — hostile keys included (NUL, a lone surrogate, 1 MB, 10,000 attempts) — are `ConsoleSignInFailed`,
 * one by one within the address's limit and one coalesced event past it, counted as denials by the database too.
 */
import { describe, expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Clock, Effect, Exit, Option } from "effect"
import { outcomeOf } from "../../../audit/Groups.ts"
import { EventLog } from "../../../core/EventLog.ts"
import * as Admin from "../../../hub/commands/Admin.ts"
import * as Sessions from "../../../hub/console/Sessions.ts"
import * as HubLog from "../../support/HubLog.ts"

const from = { ip: "203.0.113.7", userAgent: "test" }

/** On the real clock: the limiter writes ended windows every second of it (the test clock would never tick). */
const live = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.withClock(effect, Clock.make())

const eventsOf = (type: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.unsafe<{ position: number; data: any; workspace_id: string | null; denied: boolean }>(
      `select position::int as position, data, workspace_id, connect_audit_denied(type, data) as denied from events where type = $1 order by position`,
      [type]
    ))

describe("console sessions", () => {
  it.layer(HubLog.layer, { timeout: 120_000 })((it) => {
    it.scoped("a session reads as its key until signed out, expired or revoked, each end on the log once", () =>
      live(Effect.gen(function*() {
        const { apiKey, workspaceId } = yield* Admin.createWorkspace("console")
        const sessions = yield* Sessions.make(1_500)
        const { id, session } = yield* sessions.signIn(apiKey.key, from)
        expect(session).toMatchObject({ apiKeyId: apiKey.apiKeyId, workspaceId, scope: "workspace" })
        expect(Option.map(yield* sessions.current(id, from), (s) => s.apiKeyId)).toEqual(Option.some(apiKey.apiKeyId))
        expect(yield* sessions.signOut(id, from)).toBe(true)
        expect(Option.isNone(yield* sessions.current(id, from))).toBe(true)
        expect(yield* sessions.signOut(id, from)).toBe(false)

        const expiring = yield* sessions.signIn(apiKey.key, from)
        yield* Effect.promise(() => new Promise((r) => setTimeout(r, 1_600)))
        expect(Option.isNone(yield* sessions.current(expiring.id, from))).toBe(true)
        expect(Option.isNone(yield* sessions.current(expiring.id, from))).toBe(true)

        const revoked = yield* sessions.signIn(apiKey.key, from)
        yield* Admin.revokeApiKey(apiKey.apiKeyId)
        expect(Option.isNone(yield* sessions.current(revoked.id, from))).toBe(true)

        const ins = yield* eventsOf("ConsoleSignedIn")
        const outs = yield* eventsOf("ConsoleSignedOut")
        expect(ins.map((e) => e.data.session)).toEqual([session.ref, expiring.session.ref, revoked.session.ref])
        expect(outs.map((e) => [e.data.session, e.data.reason])).toEqual([
          [session.ref, "signed_out"],
          [expiring.session.ref, "expired"],
          [revoked.session.ref, "key_revoked"]
        ])
        expect([...ins, ...outs].every((e) => e.workspace_id === workspaceId && !e.denied)).toBe(true)
        const log = JSON.stringify([...ins, ...outs])
        for (const secret of [apiKey.key, id, expiring.id, revoked.id]) expect(log).not.toContain(secret)
        // A revoked key signs in no more.
        const refused = yield* Effect.exit(sessions.signIn(apiKey.key, from))
        expect(refused).toMatchObject({ _tag: "Failure" })
        expect(JSON.stringify(Exit.isFailure(refused) && refused.cause)).toContain("revoked_api_key")
      })))

    it.scoped("hostile keys are refused with a clear reason; past the limit, one event stands for the rest", () =>
      live(Effect.gen(function*() {
        const log = yield* EventLog
        const before = (yield* log.head).position
        // Only this test's refusals (the file's tests share one database).
        const mine = Effect.map(eventsOf("ConsoleSignInFailed"), (rows) => rows.filter((e) => e.position > before))
        const sessions = yield* Sessions.make(60_000, { burst: 3, windowMs: 500 })
        const hostile = [`pc_${"a".repeat(40)}\u0000`, `pc_\ud800${"b".repeat(40)}`, "x".repeat(1_000_000), ""]
        for (const key of hostile) {
          const exit = yield* Effect.exit(sessions.signIn(key, from))
          expect(JSON.stringify(Exit.isFailure(exit) && exit.cause)).toMatch(/unknown_api_key|rate_limited/)
        }
        for (let i = 0; i < 10_000; i++) yield* Effect.exit(sessions.signIn(`pc_${"c".repeat(40)}`, from))
        // Each window is written once it has ended (checked every second, on the real clock); wait for the last.
        const counted = (rows: ReadonlyArray<{ data: any }>) => rows.reduce((n, e) => n + (e.data.count ?? 1), 0)
        let failed = yield* mine
        for (let i = 0; i < 40 && counted(failed) < hostile.length + 10_000; i++) {
          yield* Effect.promise(() => new Promise((r) => setTimeout(r, 500)))
          failed = yield* mine
        }
        // 10,004 refusals; on a loaded machine the loop spans a few 500 ms windows, each at most two events.
        expect(failed.length).toBeLessThanOrEqual(50)
        expect(failed.slice(0, 3).map((e) => e.data.count)).toEqual([undefined, undefined, undefined])
        expect(counted(failed)).toBe(hostile.length + 10_000)
        expect(failed.every((e) => e.denied && outcomeOf("ConsoleSignInFailed", e.data) === "denied")).toBe(true)
        // Nothing of a presented key beyond its 8-character prefix, and only when it looked like a key.
        expect(JSON.stringify(failed)).not.toContain("a".repeat(9))
        expect(failed.map((e) => e.data.keyPrefix).filter((p) => p !== undefined)).toEqual(failed.map((e) => e.data.keyPrefix).filter((p) => p !== undefined).map(() => "pc_ccccc"))
        expect((yield* log.head).position - before).toBe(failed.length)
      })))
  })
})
