/**
 * `connect audit verify` repeated (each run a process of its own, so nothing but Postgres remembers the last one)
 * adds at most one `AuditRead` per window, with the runs it stands for, and every run is counted exactly: by the next
 * run after the window, by the hub's closer, under concurrent runs, and across a run killed between deciding and
 * appending (its event in the outbox under its id).
 */
import { describe, expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import * as PgReadWindows from "../../audit/PgReadWindows.ts"
import type { VerifyResult } from "../../audit/Verify.ts"
import * as VerifyRecord from "../../audit/VerifyRecord.ts"
import { EventLog } from "../../core/EventLog.ts"
import type { AuditRead } from "../../core/Events.ts"
import * as HubLog from "../support/HubLog.ts"

const intact = (to: number): VerifyResult => ({ ok: true, count: to, headHash: "00", from: 1, to })

const broken = (to: number): VerifyResult => ({
  ok: false,
  count: 4,
  position: 5,
  reason: "hash_mismatch",
  message: "position 5 was altered",
  breaks: [{ position: 5, reason: "hash_mismatch", message: "position 5 was altered" }],
  truncated: false,
  from: 1,
  to
})

/** One `connect audit verify` run's record, with a window of `windowMs`. */
const run = (result: VerifyResult, windowMs: number) => VerifyRecord.record({ independent: false }, result, [], windowMs)

/** The verify records on the log, oldest first. */
const verifyReads = Effect.gen(function*() {
  const log = yield* EventLog
  const all = yield* log.readAll(0, 10_000)
  return all.filter((e) => e.type === "AuditRead" && (e.event as AuditRead).kind === "verify").map((e) => ({
    id: e.id,
    event: e.event as AuditRead
  }))
})

const runsOf = (reads: ReadonlyArray<{ event: AuditRead }>) => reads.reduce((n, r) => n + (r.event.runs ?? 1), 0)

const pending = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.map(sql.unsafe<{ n: number }>(`select coalesce(sum(pending), 0)::int as n from audit_read_windows`), ([r]) => r!.n))

const HOUR = 3_600_000

describe("offline reads coalesced per window", () => {
  it.layer(HubLog.layer, { timeout: 60_000 })("repeated verify runs", (it) => {
    it.effect("one event for a window's first run; the rest counted, then closed as one event with runs", () =>
      Effect.gen(function*() {
        for (let i = 1; i <= 5; i++) yield* run(intact(10 + i), HOUR)
        const first = yield* verifyReads
        expect(first).toHaveLength(1)
        expect(first[0]!.event.runs).toBeUndefined()
        expect(yield* pending).toBe(4)
        // Not ended: the hub's closer leaves it.
        expect(yield* PgReadWindows.closeEnded).toBe(0)

        // A broken chain is never folded into the intact runs: recorded at once, after the intact rest.
        yield* run(broken(20), HOUR)
        const after = yield* verifyReads
        expect(after.map((r) => [r.event.verified, r.event.runs])).toEqual([
          ["intact", undefined],
          ["intact", 4],
          ["broken", undefined]
        ])
        expect(after[1]!.event.toPosition).toBe(15)
        expect(after[1]!.event.firstAt!.getTime()).toBeLessThanOrEqual(after[1]!.event.lastAt!.getTime())
        expect(yield* pending).toBe(0)
        expect(runsOf(after)).toBe(6)
      }))
  })

  it.layer(HubLog.layer, { timeout: 60_000 })("a window that ended", (it) => {
    it.effect("is closed by the hub, or carried by the next run: every run counted once", () =>
      Effect.gen(function*() {
        for (let i = 0; i < 3; i++) yield* run(intact(10), 1_000)
        yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 1100)))
        expect(yield* PgReadWindows.closeEnded).toBe(1)
        expect(yield* PgReadWindows.closeEnded).toBe(0)
        const closed = yield* verifyReads
        expect(closed.map((r) => r.event.runs)).toEqual([undefined, 2])
        // The next run opens a new window (recorded at once); its repeats are carried by the first run after it.
        for (let i = 0; i < 3; i++) yield* run(intact(11), 1_000)
        yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 1100)))
        yield* run(intact(12), 1_000)
        const carried = yield* verifyReads
        expect(carried.map((r) => r.event.runs)).toEqual([undefined, 2, undefined, 3])
        expect(carried[3]!.event.toPosition).toBe(12)
        expect(runsOf(carried)).toBe(7)
        expect(yield* pending).toBe(0)
      }))
  })

  it.layer(HubLog.layer, { timeout: 60_000 })("concurrent runs", (it) => {
    it.effect("eight runs at once: one recorded, seven counted", () =>
      Effect.gen(function*() {
        yield* Effect.all(Array.from({ length: 8 }, () => run(intact(3), HOUR)), { concurrency: "unbounded" })
        expect(yield* verifyReads).toHaveLength(1)
        expect(yield* pending).toBe(7)
      }))
  })

  it.layer(HubLog.layer, { timeout: 60_000 })("a run killed between deciding and appending", (it) => {
    it.effect("leaves its event in the outbox, appended once by whoever comes next", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* run(intact(1), HOUR)
        const [appended] = yield* verifyReads
        // Killed after the append, before the outbox row was taken out: the row is back, under the same id.
        yield* sql.unsafe(
          `insert into audit_read_outbox (id, stream, workspace_id, event, meta)
           select id, stream, workspace_id, data || jsonb_build_object('_tag', type), meta from events where id = $1`,
          [appended!.id]
        )
        // Killed before the append: a decided event only the outbox holds.
        yield* sql.unsafe(
          `insert into audit_read_outbox (id, stream, workspace_id, event, meta)
           select '0193abcd-0000-7000-8000-00000000f00d', 'auditread-0193abcd-0000-7000-8000-00000000f00d', null,
                  data || jsonb_build_object('_tag', type, 'runs', 3), meta from events where id = $1`,
          [appended!.id]
        )
        expect(yield* PgReadWindows.drain).toBe(2)
        const reads = yield* verifyReads
        expect(reads.map((r) => [r.id, r.event.runs])).toEqual([
          [appended!.id, undefined],
          ["0193abcd-0000-7000-8000-00000000f00d", 3]
        ])
        expect((yield* sql.unsafe<{ n: number }>(`select count(*)::int as n from audit_read_outbox`))[0]!.n).toBe(0)
      }))
  })
})
