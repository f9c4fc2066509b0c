/**
 * `connect audit`'s query on a real log: each filter selects exactly the events the --follow matcher accepts, the
 * limit is applied after the filters (newest first), the database's outcome rule is audit/Groups.ts's, and the
 * records mask addresses unless revealed.
 */
import { describe, expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect, Either } from "effect"
import * as PgQuery from "../../audit/PgQuery.ts"
import { outcomeOf } from "../../audit/Groups.ts"
import { matches, parseFilters, type RawFilters } from "../../audit/Query.ts"
import { formatTable, toRecord } from "../../audit/QueryCli.ts"
import { EventLog } from "../../core/EventLog.ts"
import * as E from "../../core/Events.ts"
import { AgentId, ServiceId, TunnelId, uuidv7, WorkspaceId } from "../../core/Ids.ts"
import * as HubLog from "../support/HubLog.ts"

const w1 = WorkspaceId.make(uuidv7())
const w2 = WorkspaceId.make(uuidv7())
const a1 = AgentId.make(uuidv7())
const a2 = AgentId.make(uuidv7())
const s1 = ServiceId.make(uuidv7())
const admin = new E.EventMeta({ actor: { kind: "admin" } })
const asAgent = (id: string, ip: string) => new E.EventMeta({ actor: { kind: "agent", id }, sourceIp: ip })

const fill = Effect.gen(function*() {
  const log = yield* EventLog
  const add = (event: E.Event, workspaceId: string | null, meta: E.EventMeta) =>
    log.append(`audit-${uuidv7()}`, [event], { expectedVersion: "any", workspaceId, meta })
  const expires = new Date(Date.now() + 86_400_000)
  const hash = "a".repeat(64) as E.Sha256Hex
  yield* add(new E.WorkspaceCreated({ workspaceId: w1, name: "one" }), w1, admin) // 1
  yield* add(new E.AgentProvisioned({ agentId: a1, label: "build-box", tokenHash: hash, expiresAt: expires }), w1, admin) // 2
  yield* add(new E.AgentConnected({ agentId: a1, ip: "203.0.113.7", userAgent: "t", transport: "ws" }), w1, asAgent(a1, "203.0.113.7")) // 3
  yield* add(new E.ServiceExposed({ serviceId: s1, agentId: a1, name: "prod-db", targetHost: "127.0.0.1", targetPort: 5432 }), w1, asAgent(a1, "203.0.113.7")) // 4
  yield* add(new E.AgentAuthFailed({ reason: "unknown_token", ip: "198.51.100.9" }), null, new E.EventMeta({ actor: { kind: "public" }, sourceIp: "198.51.100.9" })) // 5
  yield* add(new E.ReachDenied({ requestedName: "prod-db", fromAgentId: a2, reason: "not_found" }), w2, asAgent(a2, "2001:db8:85a3::5")) // 6
  const tunnelId = TunnelId.make(uuidv7())
  yield* add(new E.TunnelOpened({ tunnelId, serviceId: s1, serviceName: "prod-db", fromAgentId: a1, toAgentId: a1 }), w1, asAgent(a1, "203.0.113.8")) // 7
  yield* add(new E.TunnelClosed({ tunnelId, serviceId: s1, bytesUp: 1, bytesDown: 2, durationMs: 3, reason: "connect_failed" }), w1, asAgent(a1, "203.0.113.8")) // 8
  // Newer than all of the above: 30 connections of another agent, so a limit applied before the filters finds nothing.
  for (let i = 0; i < 30; i++) {
    yield* add(new E.AgentConnected({ agentId: a2, ip: `192.0.2.${i}`, userAgent: "t", transport: "ws" }), w2, asAgent(a2, `192.0.2.${i}`)) // 9..38
  }
})

const run = (raw: RawFilters) =>
  Effect.gen(function*() {
    const filters = Either.getOrThrow(parseFilters(raw, new Date()))
    const resolved = yield* PgQuery.resolve(filters)
    return yield* PgQuery.query(filters, resolved)
  })
const positions = (raw: RawFilters) => Effect.map(run(raw), (events) => events.map((e) => e.position))

describe("audit query", () => {
  it.layer(HubLog.layer, { timeout: 60_000 })("on a log", (it) => {
    it.effect("selects by each filter, newest first, limit after the filters, as the --follow matcher does", () =>
      Effect.gen(function*() {
        yield* fill
        const cases: ReadonlyArray<[RawFilters, ReadonlyArray<number>]> = [
          [{ type: "auth" }, [5]],
          [{ type: "tunnel" }, [8, 7, 6]],
          [{ type: "ServiceExposed,WorkspaceCreated" }, [4, 1]],
          [{ workspace: w1 }, [8, 7, 4, 3, 2, 1]],
          [{ agent: a1 }, [8, 7, 4, 3, 2]],
          [{ agent: "build-box" }, [8, 7, 4, 3, 2]],
          [{ agent: "build-box", limit: 2 }, [8, 7]],
          [{ agent: "nobody" }, []],
          [{ service: "prod-db" }, [8, 7, 6, 4]],
          [{ service: s1 }, [8, 7, 4]],
          [{ outcome: "denied" }, [8, 6, 5]],
          [{ outcome: "denied", limit: 1 }, [8]],
          [{ ip: "203.0.113.7" }, [4, 3]],
          [{ ip: "203.0.113.x" }, [8, 7, 4, 3]],
          // A range: the newest positions first (enough here), else the whole log (the case above).
          [{ ip: "203.0.113.x", limit: 2 }, [8, 7]],
          [{ ip: "2001:db8:85a3::/48" }, [6]],
          [{ ip: "198.51.100.0/24", type: "auth" }, [5]],
          [{ since: "1h", type: "admin" }, [1]],
          [{ until: "2000-01-01" }, []],
          [{ limit: 3 }, [38, 37, 36]]
        ]
        const all = yield* run({ limit: 10_000 })
        expect(all.length).toBe(38)
        for (const [raw, expected] of cases) {
          expect([raw, yield* positions(raw)]).toEqual([raw, expected])
          // The matcher --follow applies to new events agrees with the query over every stored event.
          const filters = Either.getOrThrow(parseFilters(raw, new Date()))
          const resolved = yield* PgQuery.resolve(filters)
          const matched = all.filter((e) =>
            matches(filters, resolved, {
              type: e.type,
              workspaceId: e.workspaceId,
              recordedAt: e.recordedAt,
              data: JSON.parse(e.dataJson),
              meta: JSON.parse(e.metaJson)
            })
          ).map((e) => e.position)
          expect([raw, matched.slice(0, filters.limit)]).toEqual([raw, expected])
        }
      }))

    it.effect("pages an address range back from a position, in the newest positions first or the whole log", () =>
      Effect.gen(function*() {
        const page = (ip: string, limit: number, before: number) =>
          Effect.gen(function*() {
            const filters = Either.getOrThrow(parseFilters({ ip, limit }, new Date()))
            const events = yield* PgQuery.query(filters, yield* PgQuery.resolve(filters), before)
            return events.map((e) => e.position)
          })
        expect(yield* page("203.0.113.x", 2, 8)).toEqual([7, 4])
        expect(yield* page("203.0.113.x", 50, 8)).toEqual([7, 4, 3])
        expect(yield* page("192.0.2.0/24", 3, 38)).toEqual([37, 36, 35])
      }))

    it.effect("--since and --until at each stored instant hold every event of that instant (a batch shares one)", () =>
      Effect.gen(function*() {
        const log = yield* EventLog
        // Five events of one append share their recorded_at: the time bound's position bound must take all five.
        yield* log.append(`audit-${uuidv7()}`, Array.from({ length: 5 }, (_, i) =>
          new E.AgentConnected({ agentId: a2, ip: `192.0.2.${100 + i}`, userAgent: "t", transport: "ws" })), {
          expectedVersion: "any",
          workspaceId: w2,
          meta: asAgent(a2, "192.0.2.100")
        })
        const all = yield* run({ limit: 10_000 })
        for (const at of new Set(all.map((e) => e.recordedAt.toISOString()))) {
          const t = new Date(at).getTime()
          expect([at, yield* positions({ until: at, limit: 1000 })])
            .toEqual([at, all.filter((e) => e.recordedAt.getTime() <= t).map((e) => e.position)])
          expect([at, yield* positions({ since: at, limit: 1000 })])
            .toEqual([at, all.filter((e) => e.recordedAt.getTime() >= t).map((e) => e.position)])
        }
      }))

    it.effect("decides outcomes in the database as outcomeOf does", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const rows = yield* sql.unsafe<{ type: string; data: unknown; denied: boolean }>(
          `select type, data, connect_audit_denied(type, data) as denied from events`
        )
        expect(rows.length).toBeGreaterThan(0)
        for (const r of rows) expect([r.type, r.denied ? "denied" : "allowed"]).toEqual([r.type, outcomeOf(r.type, r.data)])
      }))

    it.effect("masks addresses in records and the table unless revealed, and keeps the chain fields", () =>
      Effect.gen(function*() {
        const [event] = yield* run({ ip: "203.0.113.7", limit: 1 })
        const masked = toRecord(event!, false)
        expect(masked).toMatchObject({
          position: 4,
          type: "ServiceExposed",
          group: "service",
          outcome: "allowed",
          workspace: w1,
          meta: { sourceIp: "203.0.113.x" }
        })
        expect(masked.hash).toMatch(/^[0-9a-f]{64}$/)
        expect(masked.prevHash).toMatch(/^[0-9a-f]{64}$/)
        expect(JSON.stringify(masked)).not.toContain("203.0.113.7")
        expect(toRecord(event!, true).meta).toMatchObject({ sourceIp: "203.0.113.7" })
        const [auth] = yield* run({ type: "auth" })
        expect(toRecord(auth!, false).data).toMatchObject({ ip: "198.51.100.x" })
        const table = formatTable([masked, toRecord(auth!, false)])
        expect(table.split("\n")[0]).toMatch(/^TIME\s+POSITION\s+TYPE\s+ACTOR\s+TARGET\s+OUTCOME\s+SOURCE$/)
        expect(table).toContain("203.0.113.x")
        expect(table).toMatch(/AgentAuthFailed\s+public\s+denied\s+198\.51\.100\.x/)
        expect(table).not.toMatch(/203\.0\.113\.7|198\.51\.100\.9/)
      }))
  })
})
