/**
 * The hub's `RelayPolicy` over the event log and the read models: agents authenticate with their token (audited
 * when refused), every connection, exposure, tunnel and refusal is appended as an event, reach resolves only within
 * the agent's own workspace, and what already happened (`TunnelClosed`, `AgentDisconnected`, refusals) is never lost
 * (retried, then spooled while Postgres is unreachable or when the append is interrupted: FactRecorder.ts).
 */
import { SqlClient } from "@effect/sql"
import { type Duration, Effect, type Schedule } from "effect"
import * as AgentDecider from "../../core/AgentDecider.ts"
import { EventLog } from "../../core/EventLog.ts"
import {
  AgentDisconnected,
  type DisconnectReason,
  EventMeta,
  type ReachDeniedReason,
  TunnelClosed,
  type TunnelCloseReason,
  TunnelOpened
} from "../../core/Events.ts"
import { AgentId, LinkId, Streams, TunnelId } from "../../core/Ids.ts"
import { RelayDenied } from "../../core/RelayPolicy.ts"
import { ShareId, WorkspaceId } from "../../core/Ids.ts"
import type { RelayPolicyService, Session, TunnelInfo } from "../../core/RelayPolicy.ts"
import * as ServiceDecider from "../../core/ServiceDecider.ts"
import { CAPS, isRecordable, sanitize } from "../../core/Text.ts"
import { type CloseInfo, CLOSE_CODES } from "../../core/Transport.ts"
import * as AgentAuth from "../commands/AgentAuth.ts"
import * as AuthFailures from "../http/AuthFailures.ts"
import * as Command from "../commands/Command.ts"
import * as FactRecorder from "../eventlog/FactRecorder.ts"
import * as ReachDenials from "./ReachDenials.ts"
import * as ShareReach from "./ShareReach.ts"
import type { Spool } from "../eventlog/Spool.ts"
import * as Agents from "../readmodels/Agents.ts"
import * as Services from "../readmodels/Services.ts"

/** The hub's answer to a reach it refuses, whether the name does not exist or belongs to another workspace. */
export const SERVICE_NOT_FOUND = "Service not found"

/** The code a carrier reports when the connection vanished without a close frame (never sent; see `CloseInfo`). */
const VANISHED = 1006

/** Maps how a relay connection closed to the catalog's disconnect reason. */
export const disconnectReason = ({ code, reason }: CloseInfo): typeof DisconnectReason.Type => {
  if (code === CLOSE_CODES.Replaced) return "replaced"
  // Unauthorized closes a live connection only when its token is revoked (a refused Hello is never recorded here).
  if (code === CLOSE_CODES.Unauthorized && /revoked/.test(reason)) return "token_revoked"
  if (code === CLOSE_CODES.Timeout) return "heartbeat_timeout"
  if (code === CLOSE_CODES.Protocol || code === CLOSE_CODES.FrameTooLarge) return "protocol_error"
  if (code === VANISHED || code === CLOSE_CODES.Internal) return "transport_error"
  // The relay's own stop ("relay stopped") and the carrier's ("hub shutting down").
  if (/relay stopped|shutting down/.test(reason)) return "hub_shutdown"
  return "closed"
}

/** The reason the relay ends a tunnel with when the share it was opened through is revoked (sent in its `Reset`). */
export const SHARE_REVOKED = "ShareRevoked"

/** The reason the relay ends a tunnel with when the share it was opened through expires. */
export const SHARE_EXPIRED = "ShareExpired"

/** Maps the relay's tunnel end reason (a `Reset` reason or an error code) to the catalog's close reason. */
export const tunnelCloseReason = (reason: string): typeof TunnelCloseReason.Type => {
  if (reason === "closed") return "end"
  if (reason === "AgentDisconnected" || reason === "AgentOffline" || reason === "HubDisconnected") return "agent_disconnected"
  if (/^(ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|NoTarget)$/.test(reason)) return "connect_failed"
  if (reason === "Protocol" || reason === "Unavailable" || reason === "Internal") return "error"
  if (reason === SHARE_REVOKED) return "share_revoked"
  if (reason === SHARE_EXPIRED) return "share_expired"
  return "reset"
}

const agentMeta = (session: Session, ip?: string, userAgent?: string) =>
  new EventMeta({
    actor: { kind: "agent", id: session.agentId },
    ...(ip ? { sourceIp: ip } : {}),
    ...(userAgent ? { userAgent } : {})
  })

/** The hub's public-link proxy as the actor of the tunnels it opens (a link's pooled connections). */
const LINK_ACTOR = new EventMeta({ actor: { kind: "system", id: "link-proxy" } })

/** The meta of a tunnel's events: the reaching agent from its address, or the link proxy. */
const tunnelMeta = (tunnel: TunnelInfo) =>
  tunnel.from.link ? LINK_ACTOR : agentMeta(tunnel.from, AgentAuth.ipOf(tunnel.remoteAddress))

/** A link's reach: the exposed service of its workspace, no refusal recorded (the proxy records the request's). */
const resolveForLink = (session: Session, name: string) =>
  Effect.gen(function*() {
    const row = isRecordable(name) && name.length <= CAPS.name
      ? yield* Services.byName(session.workspaceId, name, "00000000-0000-0000-0000-000000000000")
      : undefined
    if (!row) return yield* new RelayDenied({ code: "ServiceNotFound", message: SERVICE_NOT_FOUND })
    if (!row.connected) {
      return yield* new RelayDenied({ code: "AgentOffline", message: `the agent exposing ${name} is offline` })
    }
    return { agentId: row.agent_id, workspaceId: session.workspaceId, service: name }
  })

/** Through a share: the share and the reacher's workspace on the tunnel's events (its API keys read them: 0015). */
const viaShare = (tunnel: TunnelInfo) =>
  tunnel.to.shareId === undefined
    ? {}
    : { viaShareId: ShareId.make(tunnel.to.shareId), peerWorkspaceId: WorkspaceId.make(tunnel.from.workspaceId) }

const unavailable = (what: string) => (cause: unknown) =>
  Effect.zipRight(
    Effect.logWarning(`relay policy: ${what} failed`, cause),
    Effect.fail(new RelayDenied({ code: "Unavailable", message: `the hub cannot record ${what} right now; try again` }))
  )

type Needs = EventLog | SqlClient.SqlClient | AgentAuth.TokenSettings

/** What the parts of the policy share. */
interface Shared {
  /** Runs a query or a command in the policy's context. */
  readonly run: <A, E>(effect: Effect.Effect<A, E, Needs>) => Effect.Effect<A, E>
  readonly facts: FactRecorder.FactRecorder
  /** Addresses of live connections by agent, for `AgentConnected`/`ReachDenied` metadata. */
  readonly addresses: Map<string, string>
  /** The metadata of an event caused by the agent of `session`, with the address it is connected from. */
  readonly metaOf: (session: Session) => EventMeta
}

/** Connections: the Hello's token checked (refusals audited), the connection and its end recorded. */
const connections = (
  { addresses, facts, metaOf, run }: Shared,
  settings: AgentAuth.TokenSettingsShape,
  authFailures: AuthFailures.AuthFailures
): Pick<RelayPolicyService, "authenticate" | "agentConnected" | "agentDisconnected"> => ({
  authenticate: (hello, remoteAddress) =>
    run(
      AgentAuth.authenticateAgent(
        hello.token,
        { ip: AgentAuth.ipOf(remoteAddress), userAgent: AgentAuth.agentUserAgent(hello.agentVersion) },
        authFailures
      )
    ).pipe(
      Effect.map((agent): Session => {
        const warn = AgentDecider.expiresSoon(agent.expiresAt, settings.now(), agent.ttlMs)
        return {
          agentId: agent.agentId,
          workspaceId: agent.workspaceId,
          label: agent.label,
          ...(warn ? { tokenExpiresAt: agent.expiresAt.toISOString() } : {})
        }
      }),
      Effect.catchTags({
        AuthFailed: (e) =>
          Effect.fail(
            new RelayDenied({
              code: e.reason === "expired_token" ? "TokenExpired" : e.reason === "revoked_token" ? "TokenRevoked" : "Unauthorized",
              message: e.message
            })
          ),
        EventLogError: unavailable("this connection"),
        VersionConflict: unavailable("this connection"),
        SqlError: unavailable("this connection")
      })
    ),

  agentConnected: (session, info) => {
    const ip = AgentAuth.ipOf(info.remoteAddress)
    const userAgent = AgentAuth.agentUserAgent(info.agentVersion)
    const transport = sanitize(info.transport, CAPS.version) || "unknown"
    return run(
      Command.handle(
        AgentDecider.decider,
        Streams.agent(AgentId.make(session.agentId)),
        { _tag: "ConnectAgent", agentId: AgentId.make(session.agentId), ip, userAgent, transport },
        { workspaceId: session.workspaceId, meta: agentMeta(session, ip, userAgent) }
      )
    ).pipe(
      Effect.tap(() => Effect.sync(() => addresses.set(session.agentId, ip))),
      Effect.asVoid,
      Effect.catchTags({
        DomainError: (e) => Effect.fail(new RelayDenied({ code: "TokenRevoked", message: e.message })),
        EventLogError: unavailable("this connection"),
        VersionConflict: unavailable("this connection")
      })
    )
  },

  agentDisconnected: (session, info) =>
    Effect.suspend(() => {
      const agentId = AgentId.make(session.agentId)
      // It happened whatever the stream holds: built without reading the stream, so that it can be spooled.
      const event = new AgentDisconnected({
        agentId,
        reason: disconnectReason(info.close),
        durationMs: Math.max(0, Math.round(info.durationMs))
      })
      return facts.record(Streams.agent(agentId), event, {
        expectedVersion: "any",
        workspaceId: session.workspaceId,
        meta: metaOf(session)
      })
    }).pipe(Effect.catchTag("EventLogError", unavailable("the disconnection")), Effect.withSpan("PgRelayPolicy.agentDisconnected"))
})

/** Exposure: the agent's rights read from its row, the service stream's decider says who holds the name. */
const exposure = ({ metaOf, run }: Shared): Pick<RelayPolicyService, "expose" | "unexpose"> => ({
  expose: (session, target) =>
    Effect.gen(function*() {
      const serviceId = ServiceDecider.serviceIdFor(session.workspaceId, target.name)
      // Who holds the name is the service stream's to say (the decider folds it), whether its agent is online or not.
      const agent = yield* Agents.exposeRights(session.workspaceId, session.agentId)
      // A revoked agent's live connection may outlast its revocation; it exposes nothing from then on.
      if (!agent || agent.revoked) return yield* new RelayDenied({ code: "TokenRevoked", message: "agent token revoked" })
      yield* Command.handle(
        ServiceDecider.decider,
        Streams.service(serviceId),
        {
          _tag: "ExposeService",
          serviceId,
          workspaceId: session.workspaceId,
          agentId: AgentId.make(session.agentId),
          name: target.name,
          host: target.host,
          port: target.port,
          ...(agent.expose_allow ? { allow: agent.expose_allow } : {})
        },
        { workspaceId: session.workspaceId, meta: metaOf(session) }
      )
    }).pipe(
      (effect) => run(effect),
      Effect.catchTags({
        DomainError: (e) =>
          Effect.fail(new RelayDenied({ code: e.reason === "Conflict" ? "Conflict" : "Forbidden", message: e.message })),
        EventLogError: unavailable("the exposure"),
        VersionConflict: unavailable("the exposure"),
        SqlError: unavailable("the exposure")
      })
    ),

  unexpose: (session, name) => {
    const serviceId = ServiceDecider.serviceIdFor(session.workspaceId, name)
    return run(
      Command.handle(
        ServiceDecider.decider,
        Streams.service(serviceId),
        { _tag: "UnexposeService", serviceId, agentId: AgentId.make(session.agentId), name },
        { workspaceId: session.workspaceId, meta: metaOf(session) }
      )
    ).pipe(
      Effect.asVoid,
      Effect.catchTags({
        DomainError: () => Effect.fail(new RelayDenied({ code: "ServiceNotFound", message: SERVICE_NOT_FOUND })),
        EventLogError: unavailable("the unexposure"),
        VersionConflict: unavailable("the unexposure")
      })
    )
  }
})

/** Reach: resolved within the reacher's workspace only; every refusal is recorded (coalesced: ReachDenials.ts). */
const reach = (
  { addresses, run }: Shared,
  denials: ReachDenials.ReachDenials,
  shares: ShareReach.ShareReach
): Pick<RelayPolicyService, "resolveReach" | "refused"> => {
  const deny = (session: Session, name: string, reason: typeof ReachDeniedReason.Type) =>
    denials.deny(session, name, reason, addresses.get(session.agentId))
  return {
    resolveReach: (session, name) =>
      session.link ? run(resolveForLink(session, name)).pipe(Effect.catchTag("SqlError", unavailable("the reach"))) :
      Effect.gen(function*() {
        // A name no service can have (U+0000 or a lone surrogate, which Postgres refuses as a parameter, or longer
        // than any name) is refused without a lookup, and recorded sanitised like any other unknown name.
        if (!isRecordable(name) || name.length > CAPS.name) {
          yield* deny(session, name, "not_found")
          return yield* new RelayDenied({ code: "ServiceNotFound", message: SERVICE_NOT_FOUND })
        }
        // The lookup runs as connect_app scoped to the reacher's workspace: another workspace's rows do not exist here.
        const row = yield* Services.byName(session.workspaceId, name, session.agentId)
        // A revoked agent's live connection may outlast its revocation; it reaches nothing from then on.
        if (row?.reacher_revoked || !row && (yield* Agents.isRevoked(session.agentId))) {
          return yield* new RelayDenied({ code: "TokenRevoked", message: "agent token revoked" })
        }
        if (row) {
          if (!row.connected) {
            yield* deny(session, name, "agent_offline")
            return yield* new RelayDenied({ code: "AgentOffline", message: `the agent exposing ${name} is offline` })
          }
          return { agentId: row.agent_id, workspaceId: session.workspaceId, service: name }
        }
        // Not its own: a service another workspace shares with this agent (checked and recorded: ShareReach.ts).
        const shared = yield* shares.resolve(session, name, addresses.get(session.agentId))
        if (shared) return shared
        // The reacher's workspace records not_found either way: its API keys read its log, and a cross_workspace there
        // would tell them another workspace has a service of that name. The detail goes to a hub-level event only the
        // operator reads (ReachDenials records cross_workspace without a workspace).
        yield* deny(session, name, "not_found")
        if (yield* Services.existsElsewhere(name, session.workspaceId)) yield* deny(session, name, "cross_workspace")
        return yield* new RelayDenied({ code: "ServiceNotFound", message: SERVICE_NOT_FOUND })
      }).pipe((effect) => run(effect), Effect.catchTag("SqlError", unavailable("the reach"))),

    // A link's own refusals are recorded by the proxy as the request's (LinkAccessed).
    refused: (session, name, reason) => session.link ? undefined : denials.note(session, name, reason, addresses.get(session.agentId))
  }
}

/** Tunnels: opened before any byte flows (fail closed), closed as a fact that is never lost. */
const tunnels = ({ facts }: Shared, log: EventLog["Type"]): Pick<RelayPolicyService, "tunnelOpened" | "tunnelClosed"> => ({
  tunnelOpened: (tunnel) =>
    log.append(
      Streams.tunnel(TunnelId.make(tunnel.tunnelId)),
      [
        new TunnelOpened({
          tunnelId: TunnelId.make(tunnel.tunnelId),
          serviceId: ServiceDecider.serviceIdFor(tunnel.to.workspaceId, tunnel.to.service),
          serviceName: tunnel.to.service,
          ...(tunnel.from.link
            ? { viaLinkId: LinkId.make(tunnel.from.link.linkId) }
            : { fromAgentId: AgentId.make(tunnel.from.agentId) }),
          toAgentId: AgentId.make(tunnel.to.agentId),
          ...viaShare(tunnel)
        })
      ],
      {
        expectedVersion: "no_stream",
        workspaceId: tunnel.to.workspaceId,
        meta: tunnelMeta(tunnel)
      }
    ).pipe(Effect.asVoid, Effect.catchAll(unavailable("the tunnel")), Effect.withSpan("PgRelayPolicy.tunnelOpened")),

  tunnelClosed: (tunnel, totals) => {
    const stream = Streams.tunnel(TunnelId.make(tunnel.tunnelId))
    const event = new TunnelClosed({
      tunnelId: TunnelId.make(tunnel.tunnelId),
      serviceId: ServiceDecider.serviceIdFor(tunnel.to.workspaceId, tunnel.to.service),
      bytesUp: totals.bytesUp,
      bytesDown: totals.bytesDown,
      durationMs: Math.max(0, Math.round(totals.durationMs)),
      reason: tunnelCloseReason(totals.reason),
      ...viaShare(tunnel)
    })
    // Version 1 is the TunnelOpened: a second TunnelClosed (a replay after a lost ack) conflicts and is skipped.
    return facts.record(stream, event, {
      expectedVersion: 1,
      workspaceId: tunnel.to.workspaceId,
      meta: tunnelMeta(tunnel)
    }).pipe(
      Effect.mapError((e) => new RelayDenied({ code: "Unavailable", message: e.message })),
      Effect.withSpan("PgRelayPolicy.tunnelClosed")
    )
  }
})

/** Options of the policy. */
export interface PgRelayPolicyOptions {
  /** Where what already happened goes while the log is unreachable. */
  readonly spool: Spool
  /** How long a fact is retried before it is spooled (default 3 tries, 200 ms apart). */
  readonly retry?: Schedule.Schedule<unknown>
  /** How refusals are coalesced (default: one window of 10 s per agent and reason). */
  readonly denials?: ReachDenials.ReachDenialsOptions
  /** How failed Hellos are limited per address and coalesced (default: see AuthFailures.ts). */
  readonly authFailures?: AuthFailures.AuthFailuresOptions
  /** The coalescing window of every kind of refusal, unless `denials` or `authFailures` name one (`--denial-window`). */
  readonly window?: Duration.DurationInput
}

/** Makes the policy over the `EventLog`, `SqlClient` and `TokenSettings` of the context. */
export const make = Effect.fn("PgRelayPolicy.make")(function*(options: PgRelayPolicyOptions) {
  const context = yield* Effect.context<Needs>()
  const log = yield* EventLog
  const settings = yield* AgentAuth.TokenSettings
  const facts = yield* FactRecorder.make(options.spool, options.retry)
  const addresses = new Map<string, string>()
  const shared: Shared = {
    run: (effect) => Effect.provide(effect, context),
    facts,
    addresses,
    metaOf: (session) => agentMeta(session, addresses.get(session.agentId))
  }
  const window = options.window === undefined ? {} : { window: options.window }
  const denials = yield* ReachDenials.make({ ...window, ...options.denials, record: facts.record })
  const authFailures = yield* AuthFailures.make({ ...window, ...options.authFailures, record: facts.record })
  const shares = yield* ShareReach.make({ ...window, record: facts.record, now: settings.now })
  const policy: RelayPolicyService = {
    ...connections(shared, settings, authFailures),
    ...exposure(shared),
    ...reach(shared, denials, shares),
    ...tunnels(shared, log)
  }
  return policy
})
