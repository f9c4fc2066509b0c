/**
 * A workspace key must not learn from its own workspace's log that another workspace has a service of some name: an
 * agent of B asking for A's service is recorded in B as `not_found`, exactly as a name nobody has; the detail
 * (`cross_workspace`) is kept where only the operator sees it (a hub-level event, on a stream of its own: on B's agent
 * stream it would show as a hole in the versions B reads, right after the `not_found`).
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect, Layer } from "effect"
import { Streams } from "../../../core/Ids.ts"
import { Hello } from "../../../core/Protocol.ts"
import * as Admin from "../../../hub/commands/Admin.ts"
import * as PgRelayPolicy from "../../../hub/relay/PgRelayPolicy.ts"
import * as Spool from "../../../hub/eventlog/Spool.ts"
import * as PgQuery from "../../../audit/PgQuery.ts"
import { parseFilters } from "../../../audit/Query.ts"
import * as HubLog from "../../support/HubLog.ts"

const hello = (token: string) => new Hello({ protocol: 1, token, transport: "ws", agentVersion: "test" })

/** Workspaces A and B, A's agent connected and exposing prod-db, B's agent provisioned; the policy over a spool. */
const twoWorkspaces = Effect.gen(function*() {
  const dir = yield* Effect.acquireRelease(
    Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-reach-"))),
    (d) => Effect.sync(() => Fs.rmSync(d, { recursive: true, force: true }))
  )
  const policy = yield* PgRelayPolicy.make({ spool: yield* Spool.make(dir) })
  const wa = yield* Admin.createWorkspace("a")
  const wb = yield* Admin.createWorkspace("b")
  const a = yield* HubLog.provisionAgent(wa.workspaceId, "a")
  const b = yield* HubLog.provisionAgent(wb.workspaceId, "b")
  const sa = yield* policy.authenticate(hello(a.token), "10.0.0.1:1")
  yield* policy.agentConnected(sa, { remoteAddress: "10.0.0.1:1", transport: "ws", agentVersion: "1" })
  yield* policy.expose(sa, { name: "prod-db", host: "127.0.0.1", port: 5432 })
  return { policy, wa, wb, a, b }
})

/** The ReachDenied events a reader sees through the audit query: `workspaceId` under row-level security, else all. */
const denials = (workspaceId: string | undefined) =>
  Effect.gen(function*() {
    const filters = yield* parseFilters({ type: "ReachDenied", limit: 1000 }, new Date())
    const read = Effect.flatMap(PgQuery.resolve(filters), (resolved) => PgQuery.query(filters, resolved))
    const rows = workspaceId === undefined ? yield* read : yield* PgQuery.inWorkspace(workspaceId, read)
    return rows.map((r) => ({ workspaceId: r.workspaceId, ...(JSON.parse(r.dataJson) as { reason: string; requestedName: string; fromAgentId: string }) }))
  })

describe("ReachDenied across workspaces", () => {
  it.layer(Layer.merge(HubLog.layer, HubLog.tokenSettings), { timeout: 60_000 })((it) => {
    it.scoped("workspace B's log reads the same for A's service name as for a name nobody has", () =>
      Effect.gen(function*() {
        const { policy, wb, b } = yield* twoWorkspaces
        // Two agents of B: refusals are coalesced per agent and reason, so each one's is the first of its window.
        const b2 = yield* HubLog.provisionAgent(wb.workspaceId, "b2")
        const sb = yield* policy.authenticate(hello(b.token), "10.0.0.2:1")
        expect((yield* Effect.flip(policy.resolveReach(sb, "prod-db"))).code).toBe("ServiceNotFound")
        const sb2 = yield* policy.authenticate(hello(b2.token), "10.0.0.3:1")
        expect((yield* Effect.flip(policy.resolveReach(sb2, "nobody-has-this"))).code).toBe("ServiceNotFound")

        // What B's workspace key can read: both refusals alike.
        const seenByB = yield* denials(wb.workspaceId)
        expect(seenByB.map((d) => [d.requestedName, d.reason]).sort()).toEqual([
          ["nobody-has-this", "not_found"],
          ["prod-db", "not_found"]
        ])
        // The operator still learns that B's agent asked for a name another workspace has.
        const all = yield* denials(undefined)
        expect(all.filter((d) => d.reason === "cross_workspace" && d.fromAgentId === b.agentId).map((d) => [d.requestedName, d.workspaceId])).toEqual([
          ["prod-db", null]
        ])
      }))

    it.scoped("B's agent stream holds only B's events, its versions without a hole; the detail is on a hub-level stream", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const { policy, wa, wb, a, b } = yield* twoWorkspaces
        const sb = yield* policy.authenticate(hello(b.token), "10.0.0.2:1")
        yield* policy.agentConnected(sb, { remoteAddress: "10.0.0.2:1", transport: "ws", agentVersion: "1" })
        expect((yield* Effect.flip(policy.resolveReach(sb, "prod-db"))).code).toBe("ServiceNotFound")
        yield* policy.agentDisconnected(sb, { close: { code: 1000, reason: "bye" }, durationMs: 1 })

        // Everything on B's agent stream is B's: what B reads of it is the whole stream, versions 1..n.
        const stream = Streams.agent(b.agentId)
        const all = yield* sql.unsafe<{ version: number; workspace_id: string | null; type: string; data: { reason?: string } }>(
          `select version, workspace_id::text, type, data from events where stream = $1 order by version`,
          [stream]
        )
        expect(all.map((e) => [e.type, e.data.reason, e.workspace_id])).toEqual([
          ["AgentProvisioned", undefined, wb.workspaceId],
          ["AgentConnected", undefined, wb.workspaceId],
          ["ReachDenied", "not_found", wb.workspaceId],
          ["AgentDisconnected", "closed", wb.workspaceId]
        ])
        expect(all.map((e) => e.version)).toEqual([1, 2, 3, 4])
        // Nothing of B's mentions A: not its workspace, agent, or that prod-db is a service somewhere.
        const seenByB = yield* sql.unsafe<{ row: string }>(`select row_to_json(e)::text as row from events e where workspace_id = $1`, [wb.workspaceId])
        for (const { row } of seenByB) {
          expect(row).not.toContain(wa.workspaceId)
          expect(row).not.toContain(a.agentId)
          expect(row).not.toContain("cross_workspace")
        }
        // The operator's detail: hub-level, on a stream of its own, naming the agent that asked.
        const detail = yield* sql.unsafe<{ stream: string; workspace_id: string | null; data: Record<string, unknown> }>(
          `select stream, workspace_id::text, data from events where type = 'ReachDenied' and data->>'reason' = 'cross_workspace'
             and data->>'fromAgentId' = $1`,
          [b.agentId]
        )
        expect(detail.map((e) => [e.stream, e.workspace_id, e.data.requestedName, e.data.fromAgentId])).toEqual([
          ["reach-cross-workspace", null, "prod-db", b.agentId]
        ])
      }))
  })
})
