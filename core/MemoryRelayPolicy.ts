/**
 * An in-memory `RelayPolicy` for tests and benchmarks: fixed agent tokens, services per workspace, reach within a
 * workspace only, and a log of every hook call.
 */
import { Effect, Layer } from "effect"
import { RelayDenied, RelayPolicy } from "./RelayPolicy.ts"
import type {
  RelayPolicyService,
  RelayRefusal,
  ServiceTarget,
  Session,
  TunnelInfo,
  TunnelTotals
} from "./RelayPolicy.ts"
import type { CloseInfo } from "./Transport.ts"

/** An agent the memory policy knows. */
export interface MemoryAgent {
  readonly token: string
  readonly agentId: string
  readonly workspaceId: string
}

/** One recorded hook call. */
export type MemoryRelayEvent =
  | { readonly _tag: "AgentConnected"; readonly agentId: string; readonly transport: string }
  | { readonly _tag: "AgentDisconnected"; readonly agentId: string; readonly close: CloseInfo }
  | { readonly _tag: "AuthFailed"; readonly remoteAddress: string }
  | { readonly _tag: "ServiceExposed"; readonly agentId: string; readonly target: ServiceTarget }
  | { readonly _tag: "ServiceUnexposed"; readonly agentId: string; readonly name: string }
  | { readonly _tag: "TunnelOpened"; readonly tunnel: TunnelInfo }
  | { readonly _tag: "TunnelClosed"; readonly tunnel: TunnelInfo; readonly totals: TunnelTotals }
  | { readonly _tag: "Refused"; readonly agentId: string; readonly name: string; readonly reason: RelayRefusal }

/** The memory policy plus handles tests use to observe and steer it. */
export interface MemoryRelayPolicy {
  readonly policy: RelayPolicyService
  /** Every hook call so far, in order. */
  readonly events: ReadonlyArray<MemoryRelayEvent>
  /** Makes `tunnelOpened` fail (to test that the relay fails closed). */
  readonly setTunnelOpenedFails: (fails: boolean) => void
}

/** Makes an in-memory policy knowing `agents`. */
export const makeMemoryRelayPolicy = (agents: ReadonlyArray<MemoryAgent>): MemoryRelayPolicy => {
  const byToken = new Map(agents.map((a) => [a.token, a]))
  const services = new Map<string, { readonly agentId: string; readonly target: ServiceTarget }>()
  const events: Array<MemoryRelayEvent> = []
  let tunnelOpenedFails = false
  const key = (workspaceId: string, name: string) => `${workspaceId}/${name}`

  const policy: RelayPolicyService = {
    authenticate: (hello, remoteAddress) =>
      Effect.suspend(() => {
        const agent = byToken.get(hello.token)
        if (!agent) {
          events.push({ _tag: "AuthFailed", remoteAddress })
          return Effect.fail(new RelayDenied({ code: "Unauthorized", message: "unknown agent token" }))
        }
        const session: Session = { agentId: agent.agentId, workspaceId: agent.workspaceId }
        return Effect.succeed(hello.label === undefined ? session : { ...session, label: hello.label })
      }),
    agentConnected: (session, info) =>
      Effect.sync(() => {
        events.push({ _tag: "AgentConnected", agentId: session.agentId, transport: info.transport })
      }),
    agentDisconnected: (session, info) =>
      Effect.sync(() => {
        events.push({ _tag: "AgentDisconnected", agentId: session.agentId, close: info.close })
      }),
    expose: (session, target) =>
      Effect.suspend(() => {
        const existing = services.get(key(session.workspaceId, target.name))
        if (existing && existing.agentId !== session.agentId) {
          return Effect.fail(new RelayDenied({ code: "Conflict", message: `service ${target.name} is taken` }))
        }
        services.set(key(session.workspaceId, target.name), { agentId: session.agentId, target })
        events.push({ _tag: "ServiceExposed", agentId: session.agentId, target })
        return Effect.void
      }),
    unexpose: (session, name) =>
      Effect.suspend(() => {
        const existing = services.get(key(session.workspaceId, name))
        if (!existing || existing.agentId !== session.agentId) {
          return Effect.fail(new RelayDenied({ code: "ServiceNotFound", message: `Service not found: ${name}` }))
        }
        services.delete(key(session.workspaceId, name))
        events.push({ _tag: "ServiceUnexposed", agentId: session.agentId, name })
        return Effect.void
      }),
    resolveReach: (session, name) =>
      Effect.suspend(() => {
        const found = services.get(key(session.workspaceId, name))
        return found
          ? Effect.succeed({ agentId: found.agentId, workspaceId: session.workspaceId, service: name })
          : Effect.fail(new RelayDenied({ code: "ServiceNotFound", message: `Service not found: ${name}` }))
      }),
    tunnelOpened: (tunnel) =>
      Effect.suspend(() => {
        if (tunnelOpenedFails) {
          return Effect.fail(new RelayDenied({ code: "Unavailable", message: "cannot record the tunnel" }))
        }
        events.push({ _tag: "TunnelOpened", tunnel })
        return Effect.void
      }),
    tunnelClosed: (tunnel, totals) =>
      Effect.sync(() => {
        events.push({ _tag: "TunnelClosed", tunnel, totals })
      }),
    refused: (session, name, reason) => {
      events.push({ _tag: "Refused", agentId: session.agentId, name, reason })
    }
  }
  return {
    policy,
    events,
    setTunnelOpenedFails: (fails) => {
      tunnelOpenedFails = fails
    }
  }
}

/** A layer providing the memory policy as the `RelayPolicy`. */
export const layerMemory = (agents: ReadonlyArray<MemoryAgent>) =>
  Layer.sync(RelayPolicy, () => makeMemoryRelayPolicy(agents).policy)
