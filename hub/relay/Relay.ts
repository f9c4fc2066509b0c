/**
 * The hub's relay router: authenticates agent connections through the `RelayPolicy`, then joins the streams of a
 * reaching agent to the exposing agent, rewriting stream ids and forwarding frames without buffering them.
 *
 * Nothing an agent sends is trusted. Memory is bounded by design: a stream carries at most `STREAM_WINDOW` bytes in
 * flight end to end, and the hub holds at most `CONNECTION_WINDOW` bytes of each connection (given back with `Window`
 * once written on; a sender that exceeds either, or credits bytes that are not outstanding, is closed with a protocol
 * error). A connection reaches through at most `maxStreams` streams, serves at most as many, and at most half of an
 * exposer's go to one reacher. A connection whose outgoing buffer stalls for `stallTimeout`, or passes
 * `maxLinkBufferedBytes`, is not reading and is closed, and so is the largest one while the hub's total passes
 * `maxBufferedBytes`. Frames without bytes (End, Opened) are accepted once per stream. Policy work is bounded too: at
 * most `maxDecisions` decisions run per connection (the rest wait in line), and `Open`/`Reach`/`Check` are
 * rate-limited per agent, refusals being recorded, coalesced, by the policy. An exception while handling one
 * connection's frame closes that connection, never the process.
 *
 * This module accepts a connection, runs its `Hello`, dispatches its messages and ends it; tunnels, the hot path, are
 * RelayTunnel.ts, checks RelayProbes.ts, what is kept per connection and how the policy runs for it RelayLink.ts, and
 * connection windows RelayWindow.ts.
 */
import { Context, Duration, Effect, Exit, FiberSet, Layer, Schedule } from "effect"
import type { Scope } from "effect"
import * as Protocol from "../../core/Protocol.ts"
import type { Message } from "../../core/Protocol.ts"
import { RelayPolicy } from "../../core/RelayPolicy.ts"
import type { RelayDenied, RelayPolicyService, Session } from "../../core/RelayPolicy.ts"
import { CLOSE_CODES } from "../../core/Transport.ts"
import type { CloseInfo, Codec, Connection, TransportError } from "../../core/Transport.ts"
import * as Heartbeat from "../../transports/Heartbeat.ts"
import { codec as msgpackCodec } from "../../transports/Msgpack.ts"
import * as WebSocket from "../../transports/WebSocket.ts"
import { codec as wsCodec } from "../../transports/Ws.ts"
import { type Decisions, denial, type Link, makeDecisions, makeLink, stop, violation } from "./RelayLink.ts"
import * as RelayProbes from "./RelayProbes.ts"
import * as RelayTunnel from "./RelayTunnel.ts"

/** Options of the relay. */
export interface RelayOptions {
  /** Heartbeat timing (default `Heartbeat.defaults`). */
  readonly heartbeat?: Heartbeat.HeartbeatOptions
  /** Time an accepted connection has to send `Hello` (default 10 s). */
  readonly helloTimeout?: Duration.DurationInput
  /** Time the exposing agent has to answer a `Probe` before the check fails (default 10 s). */
  readonly checkTimeout?: Duration.DurationInput
  /** Stream window the agents use (default `STREAM_WINDOW`); frames beyond it are a protocol violation. */
  readonly window?: number
  /** Bytes one connection may have in flight over all its streams (default `CONNECTION_WINDOW`). */
  readonly connectionWindow?: number
  /** Streams one connection may carry at once, opened by it or towards it (default 1,024). */
  readonly maxStreams?: number
  /**
   * Policy decisions running at once per connection; more wait in line (default 4: each holds a database connection
   * while it runs, and the hub's pool has 10, so one agent's flood leaves most of them to everyone else).
   */
  readonly maxDecisions?: number
  /** Decisions one connection may have waiting; beyond, requests are refused as rate limited (default 1,024). */
  readonly maxWaiting?: number
  /**
   * `Open`, `Reach` and `Check` per agent: tokens per second and burst (default 5,000/s, burst 10,000: above the relay's
   * own opening speed on our bench machine, ~2,000/s, and far above a connection pool's; what keeps one agent from
   * loading the database is `maxDecisions`, and what keeps it from flooding the log is the coalescing of denials).
   */
  readonly openRate?: { readonly perSecond: number; readonly burst: number }
  /** `Check` per agent: each one makes the exposing agent probe its target (default 2/s, burst 20). */
  readonly checkRate?: { readonly perSecond: number; readonly burst: number }
  /**
   * A connection whose outgoing buffer stays above 512 KiB without writing anything for this long is not reading and
   * is closed (default 10 s): the bytes others queued towards it hold their connection windows.
   */
  readonly stallTimeout?: Duration.DurationInput
  /** A connection whose outgoing buffer passes this is closed, reading or not (default 256 MiB). */
  readonly maxLinkBufferedBytes?: number
  /** Above this many buffered bytes in the whole hub, the connection holding most is closed (default 512 MiB). */
  readonly maxBufferedBytes?: number
  /** Protocol revision to speak (default `PROTOCOL_REVISION`; 0 plays a hub from before revisions existed). */
  readonly revision?: number
}

/** A snapshot of the relay's load. */
export interface RelayStats {
  /** Open connections (authenticated or not). */
  readonly connections: number
  /** Authenticated agents. */
  readonly agents: number
  /** Tunnels pending or open. */
  readonly streams: number
  /** Bytes queued in the hub: outgoing connection buffers plus data held for streams still being authorized. */
  readonly bufferedBytes: number
}

/** The relay router. */
export interface RelayService {
  /** Takes over a freshly accepted connection (from any transport). */
  readonly accept: (connection: Connection) => void
  /** Current load. */
  readonly stats: () => RelayStats
  /**
   * Closes the live connection of `agentId` with `code` and `reason` (e.g. `CLOSE_CODES.Unauthorized` when its token is
   * revoked), recorded like any disconnection; false when the agent has none.
   */
  readonly disconnect: (agentId: string, code: number, reason: string) => boolean
  /**
   * Ends every tunnel opened through share `shareId` (revoked): both ends get a `Reset` with `reason`, and each is
   * recorded closed like any other; returns how many there were.
   */
  readonly closeShare: (shareId: string, reason: string) => number
  /**
   * Takes over a connection of the hub itself, already authenticated as `session` (a public link's, whose `link` is
   * set): no Hello, no heartbeat, no connection events; its streams are tunnels like an agent's, decided and recorded
   * by the policy (hub/relay/RelayLocal.ts).
   */
  readonly attach: (session: Session, connection: Connection) => void
}

/** The hub's relay router. */
export class Relay extends Context.Tag("connect/hub/Relay")<Relay, RelayService>() {}

/** How often the hub-wide buffer cap is checked; between checks senders stay within their windows. */
const SAMPLE_EVERY = "100 millis"

/** One relay: its parts, its connections, and the limits this module applies. */
interface State {
  readonly policy: RelayPolicyService
  readonly decisions: Decisions
  readonly tunnels: RelayTunnel.Tunnels
  readonly probes: RelayProbes.Probes
  /** Every open connection, authenticated or not. */
  readonly links: Set<Link>
  /** Authenticated connections by agent (one each: a new one replaces the old). */
  readonly agents: Map<string, Link>
  /** The clock in ms: Effect's, so TestClock drives deadlines and durations (read synchronously, never per frame). */
  readonly now: () => number
  readonly heartbeat: Heartbeat.HeartbeatOptions
  readonly helloTimeoutMs: number
  /** The protocol revision this hub speaks (see `RelayOptions.revision`). */
  readonly revision: number
  readonly connectionWindow: number
  readonly stallMs: number
  readonly maxBuffered: number
}

/** Makes a relay deciding through `policy`; closing the scope stops its fibers (connections belong to the carrier). */
export const make = Effect.fn("Relay.make")(function*(policy: RelayPolicyService, options: RelayOptions = {}) {
  const clock = yield* Effect.clock
  const now = () => clock.unsafeCurrentTimeMillis()
  const fibers = yield* FiberSet.make<unknown, unknown>()
  const runFork = yield* FiberSet.runtime(fibers)<never>()
  const agents = new Map<string, Link>()
  const decisions = makeDecisions(policy, runFork, {
    maxDecisions: options.maxDecisions ?? 4,
    maxWaiting: options.maxWaiting ?? 1_024,
    openRate: options.openRate ?? { perSecond: 5_000, burst: 10_000 },
    now
  })
  const state: State = {
    policy,
    decisions,
    tunnels: RelayTunnel.make({
      policy,
      decisions,
      agents,
      now,
      window: options.window ?? Protocol.STREAM_WINDOW,
      maxStreams: options.maxStreams ?? 1_024,
      maxLinkBuffered: options.maxLinkBufferedBytes ?? 256 * 1024 * 1024
    }),
    probes: RelayProbes.make(policy, decisions, agents, {
      checkTimeoutMs: Duration.toMillis(options.checkTimeout ?? "10 seconds"),
      checkRate: options.checkRate ?? { perSecond: 2, burst: 20 },
      now
    }),
    links: new Set(),
    agents,
    now,
    heartbeat: options.heartbeat ?? Heartbeat.defaults,
    helloTimeoutMs: Duration.toMillis(options.helloTimeout ?? "10 seconds"),
    revision: options.revision ?? Protocol.PROTOCOL_REVISION,
    connectionWindow: options.connectionWindow ?? Protocol.CONNECTION_WINDOW,
    stallMs: Duration.toMillis(options.stallTimeout ?? "10 seconds"),
    maxBuffered: options.maxBufferedBytes ?? 512 * 1024 * 1024
  }

  yield* Effect.repeat(Effect.sync(() => sample(state)), Schedule.spaced(SAMPLE_EVERY)).pipe(Effect.forkScoped)

  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      RelayProbes.stopAll(state.probes)
      // How each connection and tunnel ended is recorded now, while the fibers that record it can still run: the
      // carrier's close events would arrive only after this scope, and the FiberSet with it, is gone.
      const stopped: CloseInfo = { code: CLOSE_CODES.GoingAway, reason: "relay stopped" }
      for (const link of [...state.links]) {
        closed(state, link, stopped)
        link.connection.close(stopped.code, stopped.reason)
      }
      // Bounded: the policy retries a record a few times and then spools or logs it, well within 4 s.
      yield* FiberSet.awaitEmpty(fibers).pipe(Effect.timeout("4 seconds"), Effect.ignore)
    })
  )

  return Relay.of({
    accept: (connection) => accept(state, connection),
    stats: () => stats(state),
    disconnect: (agentId, code, reason) => {
      const link = agents.get(agentId)
      if (!link) return false
      link.connection.close(code, reason)
      return true
    },
    closeShare: (shareId, reason) => RelayTunnel.closeWhere(state.tunnels, state.links, (info) => info.to.shareId === shareId, reason),
    attach: (session, connection) => attach(state, session, connection)
  })
})

/** Takes over `connection`: it has `helloTimeout` to be welcomed. */
const accept = (state: State, connection: Connection) => {
  const link = makeLink(connection, state.connectionWindow, state.now())
  state.links.add(link)
  link.timer = state.decisions.after(state.helloTimeoutMs, () => {
    if (link.state === "hello" || link.state === "auth") connection.close(CLOSE_CODES.Timeout, "no Hello in time")
  })
  const { guard } = state.decisions
  connection.setHandler({
    message: (message) => guard(link, () => dispatch(state, link, message)),
    close: (info) => guard(link, () => closed(state, link, info))
  })
}

/** Takes over a connection of the hub itself as `session`: ready at once, never among the agents a reach can target. */
const attach = (state: State, session: Session, connection: Connection) => {
  const link = makeLink(connection, state.connectionWindow, state.now())
  link.session = session
  link.state = "ready"
  state.links.add(link)
  const { guard } = state.decisions
  connection.setHandler({
    message: (message) => guard(link, () => dispatch(state, link, message)),
    close: (info) => guard(link, () => closed(state, link, info))
  })
}

/** A `Hello`: the version is checked, then the policy authenticates the agent and records its connection. */
const hello = (state: State, link: Link, message: Protocol.Hello) => {
  if (message.protocol !== Protocol.PROTOCOL_VERSION) {
    link.connection.send(
      new Protocol.Error({ code: "UnsupportedVersion", message: `hub speaks protocol ${Protocol.PROTOCOL_VERSION}` })
    )
    return link.connection.close(CLOSE_CODES.UnsupportedVersion, "unsupported protocol version")
  }
  link.state = "auth"
  const { policy, decisions } = state
  const connected = policy.authenticate(message, link.connection.remoteAddress).pipe(
    Effect.tap((session) =>
      policy.agentConnected(session, {
        remoteAddress: link.connection.remoteAddress,
        transport: link.connection.transport,
        agentVersion: message.agentVersion
      })
    )
  )
  decisions.decide(link, connected, (exit) => {
    if (link.state === "closed") {
      if (Exit.isSuccess(exit)) {
        const close = { code: CLOSE_CODES.Normal, reason: "closed during hello" }
        decisions.record("AgentDisconnected", policy.agentDisconnected(exit.value, { close, durationMs: 0 }))
      }
      return
    }
    if (Exit.isFailure(exit)) {
      const { code, message: text } = denial(exit)
      link.connection.send(new Protocol.Error({ code, message: text }))
      return link.connection.close(CLOSE_CODES.Unauthorized, code)
    }
    welcome(state, link, exit.value, message.revision)
  })
}

/**
 * The agent is in: it replaces any older connection of the same agent, is welcomed with the protocol revision both
 * speak (batch frames from `BATCH_REVISION` on), and its heartbeat starts.
 */
const welcome = (state: State, link: Link, session: Session, agentRevision: number | undefined) => {
  stop(link.timer)
  link.session = session
  link.state = "ready"
  const previous = state.agents.get(session.agentId)
  state.agents.set(session.agentId, link)
  if (previous && previous !== link) previous.connection.close(CLOSE_CODES.Replaced, "replaced by a new connection")
  const revision = Protocol.negotiateRevision(state.revision, agentRevision)
  link.connection.send(
    new Protocol.Welcome({
      agentId: session.agentId,
      workspaceId: session.workspaceId,
      protocol: Protocol.PROTOCOL_VERSION,
      heartbeatMs: Duration.toMillis(state.heartbeat.interval),
      ...(session.tokenExpiresAt === undefined ? {} : { tokenExpiresAt: session.tokenExpiresAt }),
      ...(state.revision === 0 ? {} : { revision })
    })
  )
  // After the Welcome, which the agent must read before it can read a batch.
  if (revision >= Protocol.BATCH_REVISION) link.connection.enableBatching?.()
  link.timer = state.decisions.runFork(Effect.ignore(Heartbeat.run(link.connection, state.heartbeat)))
}

/** One message from `link`: stream frames go to their tunnel, requests to the policy, anything else is a violation. */
const dispatch = (state: State, link: Link, message: Message) => {
  if (link.state !== "ready") {
    if (link.state === "hello" && message._tag === "Hello") return hello(state, link, message)
    return violation(link, `${message._tag} before Welcome`)
  }
  switch (message._tag) {
    case "Data":
    case "Credit":
    case "End":
    case "Reset":
    case "Opened":
      return RelayTunnel.frame(state.tunnels, link, message.stream, message)
    case "Error":
      if (message.stream === undefined) return
      return RelayTunnel.frame(state.tunnels, link, message.stream, message)
    case "Open":
      return RelayTunnel.open(state.tunnels, link, message)
    case "Expose":
      return request(state, link, message.request, state.policy.expose(link.session!, message))
    case "Unexpose":
      return request(state, link, message.request, state.policy.unexpose(link.session!, message.name))
    case "Reach":
      return reach(state, link, message)
    case "Check":
      return RelayProbes.check(state.probes, link, message)
    case "ProbeResult":
      return RelayProbes.result(state.probes, link, message)
    case "Ping":
      return link.connection.send(new Protocol.Pong({ nonce: message.nonce }))
    case "Pong":
      return
    default:
      return violation(link, `unexpected ${message._tag}`)
  }
}

/** A `Reach`: rate-limited, then resolved (and audited) by the policy; a refusal costs the agent more than a grant. */
const reach = (state: State, link: Link, message: Protocol.Reach) => {
  const { policy, decisions } = state
  if (!decisions.admitRequest(link, message.request, message.name)) return
  const resolved = Effect.asVoid(policy.resolveReach(link.session!, message.name)).pipe(
    Effect.onExit((exit) => Effect.sync(() => decisions.charge(link, exit)))
  )
  request(state, link, message.request, resolved)
}

/** A request (`Expose`, `Unexpose`, `Reach`) decided by the policy and answered with `Ack` or `Error`. */
const request = (state: State, link: Link, id: number, effect: Effect.Effect<void, RelayDenied>) => {
  if (state.decisions.busy(link)) {
    const error = new Protocol.Error({ code: "RateLimited", message: "too many requests waiting", request: id })
    return link.connection.send(error)
  }
  state.decisions.decide(link, effect, (exit) => {
    if (link.state === "closed") return
    if (Exit.isSuccess(exit)) return link.connection.send(new Protocol.Ack({ request: id }))
    const { code, message } = denial(exit)
    link.connection.send(new Protocol.Error({ code, message, request: id }))
  })
}

/** `link` closed as `close` says: its tunnels and checks end, and an agent's disconnection is recorded. */
const closed = (state: State, link: Link, close: CloseInfo) => {
  // The relay's finalizer closes links itself; the carrier's close event for them comes later and is a no-op.
  if (link.state === "closed") return
  const was = link.state
  link.state = "closed"
  state.links.delete(link)
  link.waiting.length = 0
  link.ledger.close()
  stop(link.timer)
  RelayTunnel.closeAll(state.tunnels, link)
  RelayProbes.closed(state.probes, link)
  if (was === "ready" && link.session && !link.session.link) {
    if (state.agents.get(link.session.agentId) === link) state.agents.delete(link.session.agentId)
    const durationMs = state.now() - link.connectedAt
    state.decisions.record("AgentDisconnected", state.policy.agentDisconnected(link.session, { close, durationMs }))
  }
}

/**
 * Every `SAMPLE_EVERY`: each connection is checked for a buffer over its cap or stalled, and while the hub buffers more
 * than `maxBuffered` in all, the connections holding most are closed.
 */
const sample = (state: State) => {
  let total = 0
  const t = state.now()
  for (const link of state.links) {
    RelayTunnel.checkBuffered(state.tunnels, link)
    checkStalled(state, link, t)
    total += link.connection.bufferedAmount
  }
  if (total <= state.maxBuffered) return
  const largest = [...state.links].sort((a, b) => b.connection.bufferedAmount - a.connection.bufferedAmount)
  for (const link of largest) {
    if (total <= state.maxBuffered) break
    total -= link.connection.bufferedAmount
    link.connection.close(CLOSE_CODES.SlowConsumer, "not reading: the hub's buffers are full")
  }
}

/**
 * A connection whose outgoing buffer holds more than the low-water mark and writes nothing for `stallTimeout` is not
 * reading: what others queued towards it holds their connection windows, so it is closed and they get them back.
 */
const checkStalled = (state: State, link: Link, now: number) => {
  const buffered = link.connection.bufferedAmount
  const progressed = link.ledger.progressed() || buffered < link.lastBuffered
  link.lastBuffered = buffered
  if (buffered <= WebSocket.LOW_WATER_MARK || progressed) {
    link.stalledSince = undefined
    return
  }
  link.stalledSince ??= now
  if (now - link.stalledSince >= state.stallMs && link.state !== "closed") {
    link.connection.close(CLOSE_CODES.SlowConsumer, "not reading: outgoing buffer stalled")
  }
}

/** The relay's load now. */
const stats = (state: State): RelayStats => {
  let bufferedBytes = 0
  for (const link of state.links) {
    bufferedBytes += link.connection.bufferedAmount
    for (const t of link.routes.values()) if (t.from === link) bufferedBytes += t.pendingBytes
  }
  return { connections: state.links.size, agents: state.agents.size, streams: state.tunnels.count, bufferedBytes }
}

/** A layer running a relay with the `RelayPolicy` from context. */
export const layer = (options: RelayOptions = {}): Layer.Layer<Relay, never, RelayPolicy> =>
  Layer.scoped(Relay, Effect.flatMap(RelayPolicy, (policy) => make(policy, options)))

/** Options of `serve`. */
export interface ServeOptions {
  /** Transports (codecs) to accept on the one port (default: ws and msgpack). */
  readonly codecs?: ReadonlyArray<Codec>
  /** Attach to this HTTP server instead of creating one. */
  readonly server?: import("node:http").Server
  /** Host to listen on (default 127.0.0.1). */
  readonly host?: string
  /** Port to listen on (default 0: a free port). */
  readonly port?: number
  /** The peer address an agent's upgrade request is recorded under (default the socket's), e.g. behind a proxy. */
  readonly remoteAddress?: (req: import("node:http").IncomingMessage) => string
}

/** Serves the relay over WebSocket on one port for every codec; closed with the scope. */
export const serve = Effect.fn("Relay.serve")(function*(
  relay: RelayService,
  options: ServeOptions = {}
): Effect.fn.Return<WebSocket.Served, TransportError, Scope.Scope> {
  return yield* WebSocket.serve(
    {
      codecs: options.codecs ?? [wsCodec, msgpackCodec],
      ...(options.server === undefined ? {} : { server: options.server }),
      ...(options.host === undefined ? {} : { host: options.host }),
      ...(options.port === undefined ? {} : { port: options.port }),
      ...(options.remoteAddress === undefined ? {} : { remoteAddress: options.remoteAddress })
    },
    relay.accept
  )
})
