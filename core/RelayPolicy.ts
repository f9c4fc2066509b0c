/**
 * The relay's decision and audit boundary: who an agent is, which services it may expose and reach, and the hooks
 * through which every tunnel is recorded. The hub's relay calls it and does nothing it refuses (fail closed).
 */
import { Context, Schema } from "effect"
import type { Effect } from "effect"
import type { Hello } from "./Protocol.ts"
import type { CloseInfo } from "./Transport.ts"

/** A refusal by the policy, sent to the agent as a protocol `Error` with the same code. */
export class RelayDenied extends Schema.TaggedError<RelayDenied>()("RelayDenied", {
  code: Schema.Literal(
    "Unauthorized",
    "TokenExpired",
    "TokenRevoked",
    "ServiceNotFound",
    "Forbidden",
    "Conflict",
    "AgentOffline",
    "Unavailable"
  ),
  message: Schema.String
}) {}

/** An authenticated agent connection. */
export interface Session {
  readonly agentId: string
  readonly workspaceId: string
  /** Agent label, for logs. */
  readonly label?: string
  /** ISO expiry of the token, set only when the agent should be warned (sent in `Welcome`). */
  readonly tokenExpiresAt?: string
  /**
   * Set when the hub itself reaches on behalf of a public link (hub/relay/RelayLocal.ts): `agentId` is then the link's
   * id, a key for the relay's limits only, and the tunnels it opens name the link instead of an agent.
   */
  readonly link?: { readonly linkId: string }
}

/** A service an agent publishes. */
export interface ServiceTarget {
  readonly name: string
  readonly host: string
  readonly port: number
}

/** Where a reach for a service name goes. */
export interface ReachRoute {
  /** Agent that exposes the service. */
  readonly agentId: string
  /** Workspace of the exposing agent (differs from the reacher's only through a share). */
  readonly workspaceId: string
  /** Service name as known to the exposing agent. */
  readonly service: string
  /** Share that grants a cross-workspace reach, if any. */
  readonly shareId?: string
}

/** A tunnel the relay is about to open. */
export interface TunnelInfo {
  /** Relay-assigned tunnel id (UUID). */
  readonly tunnelId: string
  /** The reaching agent. */
  readonly from: Session
  /** Where it goes. */
  readonly to: ReachRoute
  /** Address of the reaching agent's connection. */
  readonly remoteAddress: string
}

/** Totals of a tunnel that ended. */
export interface TunnelTotals {
  /** Bytes from the reacher to the exposer. */
  readonly bytesUp: number
  /** Bytes from the exposer to the reacher. */
  readonly bytesDown: number
  readonly durationMs: number
  /** "closed" for a clean close in both directions, else the reset or error reason. */
  readonly reason: string
}

/** What the relay asks and tells the rest of the hub. */
export interface RelayPolicyService {
  /** Checks a `Hello` (token, version) from `remoteAddress`; a denial closes the connection with 4001. */
  readonly authenticate: (hello: Hello, remoteAddress: string) => Effect.Effect<Session, RelayDenied>
  /** The agent's connection is live; a failure closes it. */
  readonly agentConnected: (
    session: Session,
    info: { readonly remoteAddress: string; readonly transport: string; readonly agentVersion: string }
  ) => Effect.Effect<void, RelayDenied>
  /**
   * The agent's connection ended (`close`: its code and reason as the carrier reported them). It already happened, so
   * it must be recorded: retrying and keeping it while the log is down are the implementation's (the relay calls once
   * and logs a failure).
   */
  readonly agentDisconnected: (
    session: Session,
    info: { readonly close: CloseInfo; readonly durationMs: number }
  ) => Effect.Effect<void, RelayDenied>
  /** Publishes a service of the agent. */
  readonly expose: (session: Session, target: ServiceTarget) => Effect.Effect<void, RelayDenied>
  /** Withdraws a service of the agent. */
  readonly unexpose: (session: Session, name: string) => Effect.Effect<void, RelayDenied>
  /** Resolves a service name for a reaching agent, or refuses ("ServiceNotFound", "Forbidden"). */
  readonly resolveReach: (session: Session, name: string) => Effect.Effect<ReachRoute, RelayDenied>
  /** Records a tunnel before any byte flows; a failure refuses the stream (fail closed). */
  readonly tunnelOpened: (tunnel: TunnelInfo) => Effect.Effect<void, RelayDenied>
  /** Records a tunnel that ended, with its byte counts; retried and kept by the implementation, like `agentDisconnected`. */
  readonly tunnelClosed: (tunnel: TunnelInfo, totals: TunnelTotals) => Effect.Effect<void, RelayDenied>
  /**
   * Records a refusal the relay made on its own (rate limit, stream cap) of an `Open`, `Reach` or `Check` for
   * `name`. Synchronous and never blocking, since a flood calls it once per frame: implementations coalesce.
   */
  readonly refused: (session: Session, name: string, reason: RelayRefusal) => void
}

/** Why the relay itself refused an `Open`, `Reach` or `Check`. */
export type RelayRefusal = "rate_limited" | "too_many_streams"

/** The relay policy of the hub. */
export class RelayPolicy extends Context.Tag("connect/core/RelayPolicy")<RelayPolicy, RelayPolicyService>() {}
