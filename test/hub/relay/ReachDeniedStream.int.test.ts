/**
 * The hub-level `cross_workspace` detail of a refused reach must not leave a trace in the reacher's workspace: not
 * as an event (test/hub/ReachDeniedIsolation.int.test.ts), and not as a hole in its agent stream's versions either. Workspace
 * B reads its agent's events with their versions; a hidden event on that stream would show as a skipped version right
 * after the `not_found`, telling B the name it asked for exists elsewhere.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect, Layer } from "effect"
import { Hello } from "../../../core/Protocol.ts"
import { Streams } from "../../../core/Ids.ts"
import * as Admin from "../../../hub/commands/Admin.ts"
import * as PgRelayPolicy from "../../../hub/relay/PgRelayPolicy.ts"
import * as Spool from "../../../hub/eventlog/Spool.ts"
import * as HubLog from "../../support/HubLog.ts"

const hello = (token: string) => new Hello({ protocol: 1, token, transport: "ws", agentVersion: "test" })

describe("ReachDenied across workspaces, as workspace B reads its log", () => {
  it.layer(Layer.merge(HubLog.layer, HubLog.tokenSettings), { timeout: 60_000 })((it) => {
    it.scoped("B's agent stream holds only B's events, its versions without a hole; the detail is on a hub-level stream", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const dir = yield* Effect.acquireRelease(
          Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-reach-stream-"))),
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
          `select stream, workspace_id::text, data from events where type = 'ReachDenied' and data->>'reason' = 'cross_workspace'`
        )
        expect(detail.map((e) => [e.stream, e.workspace_id, e.data.requestedName, e.data.fromAgentId])).toEqual([
          ["reach-cross-workspace", null, "prod-db", b.agentId]
        ])
      }))
  })
})
