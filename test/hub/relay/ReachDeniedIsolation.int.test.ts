/**
 * A workspace key must not learn from its own workspace's log that another workspace has a service of some name: an
 * agent of B asking for A's service is recorded in B as `not_found`, exactly as a name nobody has; the detail
 * (`cross_workspace`) is kept where only the operator sees it (a hub-level event).
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { Hello } from "../../../core/Protocol.ts"
import * as Admin from "../../../hub/commands/Admin.ts"
import * as PgRelayPolicy from "../../../hub/relay/PgRelayPolicy.ts"
import * as Spool from "../../../hub/eventlog/Spool.ts"
import * as PgQuery from "../../../audit/PgQuery.ts"
import { parseFilters } from "../../../audit/Query.ts"
import * as HubLog from "../../support/HubLog.ts"

const hello = (token: string) => new Hello({ protocol: 1, token, transport: "ws", agentVersion: "test" })

/** The ReachDenied events a reader sees through the audit query: `workspaceId` under row-level security, else all. */
const denials = (workspaceId: string | undefined) =>
  Effect.gen(function*() {
    const filters = yield* parseFilters({ type: "ReachDenied", limit: 1000 }, new Date())
    const read = Effect.flatMap(PgQuery.resolve(filters), (resolved) => PgQuery.query(filters, resolved))
    const rows = workspaceId === undefined ? yield* read : yield* PgQuery.inWorkspace(workspaceId, read)
    return rows.map((r) => ({ workspaceId: r.workspaceId, ...(JSON.parse(r.dataJson) as { reason: string; requestedName: string }) }))
  })

describe("ReachDenied across workspaces", () => {
  it.layer(Layer.merge(HubLog.layer, HubLog.tokenSettings), { timeout: 60_000 })((it) => {
    it.scoped("workspace B's log reads the same for A's service name as for a name nobody has", () =>
      Effect.gen(function*() {
        const dir = yield* Effect.acquireRelease(
          Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-reach-"))),
          (d) => Effect.sync(() => Fs.rmSync(d, { recursive: true, force: true }))
        )
        const policy = yield* PgRelayPolicy.make({ spool: yield* Spool.make(dir) })
        const wa = yield* Admin.createWorkspace("a")
        const wb = yield* Admin.createWorkspace("b")
        const a = yield* HubLog.provisionAgent(wa.workspaceId, "a")
        const b = yield* HubLog.provisionAgent(wb.workspaceId, "b")
        // Two agents of B: refusals are coalesced per agent and reason, so each one's is the first of its window.
        const b2 = yield* HubLog.provisionAgent(wb.workspaceId, "b2")
        const sa = yield* policy.authenticate(hello(a.token), "10.0.0.1:1")
        yield* policy.agentConnected(sa, { remoteAddress: "10.0.0.1:1", transport: "ws", agentVersion: "1" })
        yield* policy.expose(sa, { name: "prod-db", host: "127.0.0.1", port: 5432 })
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
        expect(all.filter((d) => d.reason === "cross_workspace").map((d) => [d.requestedName, d.workspaceId])).toEqual([
          ["prod-db", null]
        ])
      }))
  })
})
