/**
 * Hostile input at the relay's audit boundary: every refused Hello and Reach is recorded whatever its strings hold,
 * and a flood of failed Hellos from one address is refused without the database and recorded as one event per
 * address, reason and window, so it grows the log by kilobytes.
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect, Layer } from "effect"
import { EventLog } from "../../../core/EventLog.ts"
import { type Event } from "../../../core/Events.ts"
import { Hello } from "../../../core/Protocol.ts"
import { CAPS, isRecordable } from "../../../core/Text.ts"
import * as Admin from "../../../hub/commands/Admin.ts"
import * as AuthFailures from "../../../hub/http/AuthFailures.ts"
import * as PgRelayPolicy from "../../../hub/relay/PgRelayPolicy.ts"
import * as Spool from "../../../hub/eventlog/Spool.ts"
import * as HubLog from "../../support/HubLog.ts"

const settings = HubLog.tokenSettings

/** A string whose surrogate pair straddles code unit `at` (a `slice(0, at)` keeps only its high half). */
const pairSplitAt = (at: number) => "a".repeat(at - 1) + "😀".repeat(8)

/** Every hostile string a peer may send, by name. */
export const hostile: Record<string, string> = {
  nul: "a\u0000b",
  loneHigh: "a\uD800b",
  loneLow: "a\uDC00b",
  megabyte: "x".repeat(1 << 20),
  splitAtVersionCap: pairSplitAt(CAPS.version),
  splitAtLabelCap: pairSplitAt(CAPS.label),
  splitAt200: pairSplitAt(200)
}

const provision = (workspaceId: string, label: string) => HubLog.provisionAgent(workspaceId, label, 40)

const makePolicy = (options: Partial<PgRelayPolicy.PgRelayPolicyOptions> = {}) =>
  Effect.gen(function*() {
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-authfail-"))),
      (d) => Effect.sync(() => Fs.rmSync(d, { recursive: true, force: true }))
    )
    return yield* PgRelayPolicy.make({ spool: yield* Spool.make(dir), ...options })
  })

const eventsOf = (tag: string) =>
  Effect.flatMap(EventLog, (log) => log.readAll(0, 100_000)).pipe(
    Effect.map((all) => all.filter((e) => e.event._tag === tag))
  )

const sizes = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.map(
    sql.unsafe<{ rel: number; db: number }>(
      `select pg_total_relation_size('events') as rel, pg_database_size(current_database()) as db`
    ),
    (rows) => rows[0]!
  ))

const unknownToken = () => Crypto.randomBytes(32).toString("hex")

const expectRecordable = (value: unknown) => {
  const walk = (v: unknown): void => {
    if (typeof v === "string") expect(isRecordable(v)).toBe(true)
    else if (Array.isArray(v)) v.forEach(walk)
    else if (v !== null && typeof v === "object" && !(v instanceof Date)) Object.values(v).forEach(walk)
  }
  walk(value)
}

describe("auth failures and hostile strings", () => {
  it.layer(Layer.merge(HubLog.layer, settings), { timeout: 180_000 })((it) => {
    it.scoped("a window's aggregated refusal goes through the record option (the relay's spool while the log is down)", () =>
      Effect.gen(function*() {
        const recorded: Array<Event> = []
        yield* Effect.scoped(Effect.gen(function*() {
          const failures = yield* AuthFailures.make({
            burst: 1,
            window: "60 seconds",
            record: (_stream, event) => Effect.sync(() => void recorded.push(event))
          })
          for (let i = 0; i < 5; i++) yield* failures.record({ kind: "agent", ip: "198.51.100.7", reason: "unknown_token" })
        }))
        // The first refusal is appended at once; the other four, counted in one window, are recorded when it closes.
        expect(recorded).toHaveLength(1)
        expect(recorded[0]).toMatchObject({ _tag: "AgentAuthFailed", reason: "unknown_token", ip: "198.51.100.7", count: 4 })
      }))

    let address = 0
    for (const [name, text] of Object.entries(hostile)) {
      it.scoped(`records every refused Hello with ${name} in its agentVersion, label, transport or token`, () =>
        Effect.gen(function*() {
          const policy = yield* makePolicy()
          for (const field of ["agentVersion", "label", "transport", "token"] as const) {
            const i = ++address
            const before = (yield* eventsOf("AgentAuthFailed")).length
            const hello = new Hello({
              protocol: 1,
              token: unknownToken(),
              transport: "ws",
              agentVersion: "1.0",
              label: "host",
              [field]: text
            })
            const denied = yield* Effect.flip(policy.authenticate(hello, `10.9.${i}.1:4000`))
            expect({ field, name, code: denied.code }).toEqual({ field, name, code: "Unauthorized" })
            const after = yield* eventsOf("AgentAuthFailed")
            expect({ field, name, recorded: after.length - before }).toEqual({ field, name, recorded: 1 })
            const last = after[after.length - 1]!
            expect(last.event).toMatchObject({ reason: "unknown_token", ip: `10.9.${i}.1` })
            expectRecordable(last.meta)
            expect(Array.from(last.meta.userAgent ?? "").length).toBeLessThanOrEqual(CAPS.label)
          }
        }))
    }

    it.scoped("records AgentConnected whatever the agent's version and transport name", () =>
      Effect.gen(function*() {
        const policy = yield* makePolicy()
        const { workspaceId } = yield* Admin.createWorkspace("w")
        for (const [name, text] of Object.entries(hostile)) {
          const agent = yield* provision(workspaceId, `a-${name}`)
          const session = yield* policy.authenticate(
            new Hello({ protocol: 1, token: agent.token, transport: "ws", agentVersion: text, label: text }),
            "10.8.0.1:1"
          )
          yield* policy.agentConnected(session, { remoteAddress: "10.8.0.1:1", transport: text, agentVersion: text })
          const connected = (yield* eventsOf("AgentConnected")).filter((e) =>
            e.event._tag === "AgentConnected" && e.event.agentId === agent.agentId
          )
          expect({ name, n: connected.length }).toEqual({ name, n: 1 })
          expectRecordable(connected[0]!.event)
          expectRecordable(connected[0]!.meta)
        }
      }))

    for (const [name, text] of Object.entries(hostile)) {
      it.scoped(`records a refused Reach for a name with ${name}`, () =>
        Effect.gen(function*() {
          // A window of 0 ms: every refusal is appended at once, so each name has its own event.
          const policy = yield* makePolicy({ denials: { window: 0 } })
          const { workspaceId } = yield* Admin.createWorkspace(`w-${name}`)
          const agent = yield* provision(workspaceId, "reacher")
          const session = yield* policy.authenticate(
            new Hello({ protocol: 1, token: agent.token, transport: "ws", agentVersion: "1" }),
            "10.7.0.1:1"
          )
          const before = (yield* eventsOf("ReachDenied")).length
          const denied = yield* Effect.flip(policy.resolveReach(session, text))
          expect({ name, code: denied.code }).toEqual({ name, code: "ServiceNotFound" })
          const after = yield* eventsOf("ReachDenied")
          expect({ name, recorded: after.length - before }).toEqual({ name, recorded: 1 })
          const event = after[after.length - 1]!.event
          expectRecordable(event)
          if (event._tag === "ReachDenied") expect(Array.from(event.requestedName).length).toBeLessThanOrEqual(CAPS.name)
        }))
    }

    it.scoped("300 hostile Hellos from one address grow the log by kilobytes and are all accounted for", () =>
      Effect.gen(function*() {
        const before = yield* sizes
        const started = Date.now()
        yield* Effect.scoped(Effect.gen(function*() {
          const policy = yield* makePolicy()
          for (let n = 0; n < 300; n++) {
            // Random base64: Postgres cannot compress it away.
            const junk = Crypto.randomBytes(375_000).toString("base64")
            const hello = new Hello({ protocol: 1, token: unknownToken(), transport: "ws", agentVersion: junk, label: junk })
            const denied = yield* Effect.flip(policy.authenticate(hello, "203.0.113.9:4444"))
            expect(denied.code).toBe("Unauthorized")
          }
          // Past the limit the address is refused without a lookup: even a valid token, until its window ends.
          const { workspaceId } = yield* Admin.createWorkspace("flooded")
          const agent = yield* provision(workspaceId, "behind-the-same-nat")
          const hello = new Hello({ protocol: 1, token: agent.token, transport: "ws", agentVersion: "1" })
          const refused = yield* Effect.flip(policy.authenticate(hello, "203.0.113.9:5555"))
          expect(refused.message).toMatch(/too many failed/)
        }))
        const after = yield* sizes
        const failures = (yield* eventsOf("AgentAuthFailed")).filter((e) =>
          e.event._tag === "AgentAuthFailed" && e.event.ip === "203.0.113.9"
        )
        const counted = failures.reduce(
          (sum, e) => sum + (e.event._tag === "AgentAuthFailed" ? (e.event as { count?: number }).count ?? 1 : 0),
          0
        )
        console.log(
          `300 hostile Hellos: events +${after.rel - before.rel} B, database +${after.db - before.db} B, ` +
            `${failures.length} events, ${Date.now() - started} ms`
        )
        expect(counted).toBe(301)
        expect(failures.length).toBeLessThan(20)
        expect(after.rel - before.rel).toBeLessThan(512 * 1024)
        expect(after.db - before.db).toBeLessThan(1024 * 1024)
      }))
  })
})
