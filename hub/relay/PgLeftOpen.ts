/**
 * What a hub left open when it died: at its next start, before it accepts anyone, it closes in the log every tunnel
 * it opened that has no `TunnelClosed` (reason `hub_crashed`, byte counts unknown and recorded as 0) and every agent
 * connection it held that has no `AgentDisconnected`. Only its own: several hubs may share the database, and each
 * event names its hub in `meta.hubId` (HubId.ts). Events written before hubs had ids name none; they are treated as
 * this hub's, since one hub per database was the rule then.
 */
import { Clock, Effect, Either } from "effect"
import * as AgentDecider from "../../core/AgentDecider.ts"
import { EventLog, VersionConflict } from "../../core/EventLog.ts"
import { decodeEventEither, EventMeta, TunnelClosed } from "../../core/Events.ts"
import { AgentId, Streams } from "../../core/Ids.ts"
import * as Command from "../commands/Command.ts"
import * as Agents from "../readmodels/Agents.ts"
import * as StreamHeads from "../readmodels/StreamHeads.ts"

/** How many tunnels and agent connections were closed. */
export interface Closed {
  readonly tunnels: number
  readonly agents: number
}

const meta = (hubId: string) => new EventMeta({ actor: { kind: "system", id: "hub" }, hubId })

const durationSince = (now: number, since: Date | string | null) =>
  since === null ? 0 : Math.max(0, Math.round(now - new Date(since).getTime()))

const closeTunnels = (hubId: string, skip: ReadonlySet<string>) =>
  Effect.gen(function*() {
    const log = yield* EventLog
    const now = yield* Clock.currentTimeMillis
    let closed = 0
    for (const row of yield* StreamHeads.tunnelsLeftOpen(hubId)) {
      if (skip.has(row.stream)) continue
      const opened = decodeEventEither("TunnelOpened", row.data)
      if (Either.isLeft(opened) || opened.right._tag !== "TunnelOpened") {
        yield* Effect.logError(`hub: cannot close ${row.stream} left open: its TunnelOpened does not decode`)
        continue
      }
      const { tunnelId, serviceId } = opened.right
      const event = new TunnelClosed({
        tunnelId,
        serviceId,
        bytesUp: 0,
        bytesDown: 0,
        durationMs: durationSince(now, row.recorded_at),
        reason: "hub_crashed"
      })
      yield* log.append(row.stream, [event], { expectedVersion: 1, workspaceId: row.workspace_id, meta: meta(hubId) }).pipe(
        Effect.tap(() => closed++),
        // Closed meanwhile (it cannot be by this hub, which is not serving yet; a late replay of its own spool can).
        Effect.catchIf((e): e is VersionConflict => e instanceof VersionConflict, () => Effect.void)
      )
    }
    return closed
  })

const closeAgents = (hubId: string) =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const stale = yield* Agents.connectedVia(hubId)
    for (const row of stale) {
      const agentId = AgentId.make(row.id)
      yield* Command.handle(
        AgentDecider.decider,
        Streams.agent(agentId),
        { _tag: "DisconnectAgent", agentId, reason: "hub_crashed", durationMs: durationSince(now, row.connected_at) },
        { workspaceId: row.workspace_id, meta: meta(hubId) }
      )
    }
    return stale.length
  })

/**
 * Closes in the log what hub `hubId` left open when it died; run at its start, before it serves anyone, after its
 * spool was replayed. Streams in `skip` (those the spool still holds an entry for, whose real close is on its way)
 * are left alone.
 */
export const closeLeftOpen = (hubId: string, skip: ReadonlySet<string> = new Set()) =>
  Effect.gen(function*() {
    const tunnels = yield* closeTunnels(hubId, skip)
    const agents = yield* closeAgents(hubId)
    return { tunnels, agents } satisfies Closed
  }).pipe(Effect.withSpan("PgLeftOpen.closeLeftOpen", { attributes: { hubId } }))
