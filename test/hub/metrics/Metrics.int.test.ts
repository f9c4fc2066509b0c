/**
 * The hub's metrics move with what the hub does, against a real Postgres: the writer's batches (group commit) and
 * queue through PgWriter's `onBatch`, appends by type, denials and authentication failures by reason (coalesced
 * ones counted each), bytes relayed, and the gauges read from the relay and the spool at each scrape.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { EventLog } from "../../../core/EventLog.ts"
import { AgentAuthFailed, EventMeta, ReachDenied, TunnelClosed, WorkspaceCreated } from "../../../core/Events.ts"
import { uuidv7 } from "../../../core/Ids.ts"
import * as Migrations from "../../../hub/db/Migrations.ts"
import * as PgEventLog from "../../../hub/eventlog/PgEventLog.ts"
import * as Main from "../../../hub/Main.ts"
import * as Metrics from "../../../hub/metrics/Metrics.ts"
import * as ObservedLog from "../../../hub/ObservedLog.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"

const metrics = Metrics.make()

/** The hub's event log, its writer's batches counted and its appends observed, as `connect hub --metrics-port` runs. */
const layer = Layer.effect(EventLog, Effect.map(EventLog, (log) => ObservedLog.observe(log, metrics))).pipe(
  Layer.provide(PgEventLog.layer({ inline: Main.INLINE_PROJECTIONS, onBatch: metrics.batch })),
  Layer.provideMerge(Migrations.layer),
  Layer.provideMerge(TestDatabase.layer),
  Layer.orDie
)

/** The sum of a metric's samples whose labels include `labels`, from the registry's text format. */
const sample = (text: string, name: string, labels: Record<string, string> = {}): number => {
  let sum = 0
  for (const line of text.split("\n")) {
    const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line)
    if (!m || m[1] !== name) continue
    if (Object.entries(labels).every(([k, v]) => (m[2] ?? "").includes(`${k}="${v}"`))) sum += Number(m[3])
  }
  return sum
}

const scrape = Effect.promise(() => metrics.registry.metrics())
const meta = new EventMeta({ actor: { kind: "system" } })
const options = { expectedVersion: "any" as const, workspaceId: null, meta }

describe("hub metrics", () => {
  it.layer(layer, { timeout: 60_000 })((it) => {
    it.effect("move with appends, batches, denials, auth failures, bytes and the relay", () =>
      Effect.gen(function*() {
        const log = yield* EventLog
        const before = yield* scrape

        // 64 concurrent appends: the writer commits them in fewer transactions than calls.
        yield* Effect.forEach(
          Array.from({ length: 64 }, (_, i) => i),
          (i) => log.append(`workspace-${uuidv7()}`, [new WorkspaceCreated({ workspaceId: uuidv7() as never, name: `m${i}` })], options),
          { concurrency: "unbounded", discard: true }
        )
        yield* log.append("relay", [
          new ReachDenied({ requestedName: "nope", reason: "not_found" }),
          new ReachDenied({ requestedName: "nope", reason: "not_found", count: 4 })
        ], options)
        yield* log.append("auth", [new AgentAuthFailed({ reason: "expired_token", ip: "127.0.0.1", count: 5 })], options)
        yield* log.append(`tunnel-${uuidv7()}`, [
          new TunnelClosed({
            tunnelId: uuidv7() as never,
            serviceId: uuidv7() as never,
            bytesUp: 1000,
            bytesDown: 2000,
            durationMs: 5,
            reason: "end"
          })
        ], options)
        metrics.sources.relay = () => ({ connections: 3, agents: 2, streams: 7, bufferedBytes: 10 })
        metrics.sources.spoolPending = () => 4

        const after = yield* scrape
        const delta = (name: string, labels: Record<string, string> = {}) => sample(after, name, labels) - sample(before, name, labels)
        // Every append call went through one batch; 64 concurrent ones shared some.
        expect(delta("connect_eventlog_batch_requests_sum")).toBe(67)
        const commits = delta("connect_eventlog_batch_requests_count")
        expect(commits).toBeGreaterThan(3)
        expect(commits).toBeLessThan(67)
        expect(delta("connect_eventlog_batch_requests_bucket", { le: "1" })).toBeLessThan(commits)
        expect(sample(after, "connect_eventlog_writer_queued")).toBe(0)
        expect(delta("connect_events_appended_total", { type: "WorkspaceCreated" })).toBe(64)
        expect(delta("connect_eventlog_append_events_count")).toBe(67)
        expect(delta("connect_denials_total", { type: "ReachDenied", reason: "not_found" })).toBe(5)
        expect(delta("connect_auth_failures_total", { type: "AgentAuthFailed", reason: "expired_token" })).toBe(5)
        expect(delta("connect_relayed_bytes_total", { direction: "up" })).toBe(1000)
        expect(delta("connect_relayed_bytes_total", { direction: "down" })).toBe(2000)
        expect(sample(after, "connect_agents_connected")).toBe(2)
        expect(sample(after, "connect_connections_open")).toBe(3)
        expect(sample(after, "connect_tunnels_open")).toBe(7)
        expect(sample(after, "connect_spool_pending")).toBe(4)
        expect(sample(after, "connect_eventlog_appends_in_flight")).toBe(0)
      }))
  })
})
