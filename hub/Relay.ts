/**
 * The hub's relay router: authenticates agent connections through the `RelayPolicy`, then joins the streams of a
 * reaching agent to the exposing agent, rewriting stream ids and forwarding frames without buffering them.
 *
 * Nothing an agent sends is trusted. Memory is bounded by design: a stream carries at most `StreamWindow` bytes in
 * flight end to end, and the hub holds at most `ConnectionWindow` bytes of each connection (given back with `Window`
 * once written on; a sender that exceeds either, or credits bytes that are not outstanding, is closed with a protocol
 * error). A connection reaches through at most `maxStreams` streams, serves at most as many, and at most half of an
 * exposer's go to one reacher. A connection whose outgoing buffer stalls for `stallMs`, or passes
 * `maxLinkBufferedBytes`, is not reading and is closed, and so is the largest one while the hub's total passes
 * `maxBufferedBytes`. Frames without bytes (End, Opened) are accepted once per stream. Policy work is bounded too: at
 * most `maxDecisions` decisions run per connection (the rest wait in line), and `Open`/`Reach`/`Check` are
 * rate-limited per agent, refusals being recorded, coalesced, by the policy. An exception while handling one
 * connection's frame closes that connection, never the process.
 */
import * as Crypto from "node:crypto"
import { Cause, Context, Effect, Exit, FiberId, FiberSet, Layer, Schedule } from "effect"
import type { Fiber } from "effect"
import type { Scope } from "effect"
import * as Protocol from "../core/Protocol.ts"
import type { Message } from "../core/Protocol.ts"
import { RelayDenied, RelayPolicy } from "../core/RelayPolicy.ts"
import type { RelayPolicyService, RelayRefusal, Session, TunnelInfo } from "../core/RelayPolicy.ts"
import * as TokenBucket from "../core/TokenBucket.ts"
import { CloseCodes } from "../core/Transport.ts"
import type { CloseInfo, Codec, Connection, TransportError } from "../core/Transport.ts"
import { trusted } from "../transports/Framing.ts"
import * as Heartbeat from "../transports/Heartbeat.ts"
import { codec as msgpackCodec } from "../transports/Msgpack.ts"
import * as WebSocket from "../transports/WebSocket.ts"
import { codec as wsCodec } from "../transports/Ws.ts"
import * as RelayWindow from "./RelayWindow.ts"

/** Options of the relay. */
export interface RelayOptions {
  /** Heartbeat timing (default `Heartbeat.defaults`). */
  readonly heartbeat?: Heartbeat.HeartbeatOptions
  /** Time an accepted connection has to send `Hello`, in ms (default 10 s). */
  readonly helloTimeoutMs?: number
  /** Time the exposing agent has to answer a `Probe` before the check fails, in ms (default 10 s). */
  readonly checkTimeoutMs?: number
  /** Stream window the agents use (default `StreamWindow`); frames beyond it are a protocol violation. */
  readonly window?: number
  /** Bytes one connection may have in flight over all its streams (default `ConnectionWindow`). */
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
  readonly stallMs?: number
  /** A connection whose outgoing buffer passes this is closed, reading or not (default 256 MiB). */
  readonly maxLinkBufferedBytes?: number
  /** Above this many buffered bytes in the whole hub, the connection holding most is closed (default 512 MiB). */
  readonly maxBufferedBytes?: number
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
   * Closes the live connection of `agentId` with `code` and `reason` (e.g. `CloseCodes.Unauthorized` when its token is
   * revoked), recorded like any disconnection; false when the agent has none.
   */
  readonly disconnect: (agentId: string, code: number, reason: string) => boolean
}

/** The hub's relay router. */
export class Relay extends Context.Tag("connect/hub/Relay")<Relay, RelayService>() {}

interface Link {
  readonly connection: Connection
  readonly connectedAt: number
  state: "hello" | "auth" | "ready" | "closed"
  session: Session | undefined
  /** Stream id on this connection → the tunnel end it belongs to (odd: opened by the agent, even: by the hub). */
  readonly routes: Map<number, Tunnel>
  nextId: number
  /** Its connection window: the bytes it sent that the hub holds, and the frames the hub writes to it for others. */
  readonly ledger: RelayWindow.Ledger
  /** Tunnels it reaches through, and tunnels towards it (each capped at `maxStreams`). */
  reaching: number
  serving: number
  /** Tunnels it reaches through, by exposing link (capped at half of `maxStreams`, so one reacher cannot take all). */
  readonly pairs: Map<Link, number>
  /** When its outgoing buffer stopped draining (see `stallMs`), and its size at the last sample. */
  stalledSince: number | undefined
  lastBuffered: number
  /** Policy decisions running for this connection, and those waiting for one of its `maxDecisions` slots. */
  deciding: number
  readonly waiting: Array<() => void>
  /** Its timer fiber: the `Hello` deadline until `Welcome`, the heartbeat from then on. */
  timer: Fiber.RuntimeFiber<unknown, unknown> | undefined
}

interface Tunnel {
  info: TunnelInfo | undefined
  readonly service: string
  readonly from: Link
  readonly fromStream: number
  to: Link | undefined
  /** The exposing link whose stream slots this tunnel holds, from the moment the policy picked it. */
  reserved: Link | undefined
  toStream: number
  state: "pending" | "open" | "closed"
  /** Frames from the reacher that arrived while the policy decided (bounded by the window and `MaxPending`). */
  pending: Array<Message>
  pendingBytes: number
  bytesUp: number
  bytesDown: number
  /** Bytes received and not yet credited, per direction (counted on arrival, so pending data counts too). */
  inflightUp: number
  inflightDown: number
  endedUp: boolean
  endedDown: boolean
  /** The exposer confirmed its target connected (`Opened` is accepted once). */
  confirmed: boolean
  readonly openedAt: number
}

/**
 * Frames a reacher may send on a stream before the policy has decided. Window-bounded in bytes, but frames without
 * bytes (End, Opened) would otherwise pile up without bound; an honest agent sends a handful.
 */
const MaxPending = 1_024

/** Tokens a refused `Open`, `Reach` or `Check` costs its agent (see `charge`). */
const RefusalCost = 10

/** How often the hub-wide buffer cap is checked; between checks senders stay within their windows. */
const SampleEvery = "100 millis"

/** Makes a relay deciding through `policy`; closing the scope stops its fibers (connections belong to the carrier). */
export const make = Effect.fn("Relay.make")(function*(policy: RelayPolicyService, options: RelayOptions = {}) {
  const heartbeat = options.heartbeat ?? Heartbeat.defaults
  const helloTimeoutMs = options.helloTimeoutMs ?? 10_000
  const window = options.window ?? Protocol.StreamWindow
  const connectionWindow = options.connectionWindow ?? Protocol.ConnectionWindow
  const maxStreams = options.maxStreams ?? 1_024
  const maxDecisions = options.maxDecisions ?? 4
  const maxWaiting = options.maxWaiting ?? 1_024
  const maxLinkBuffered = options.maxLinkBufferedBytes ?? 256 * 1024 * 1024
  const stallMs = options.stallMs ?? 10_000
  // Deadlines, durations and rates come from Effect's clock (so TestClock drives them); read synchronously, never per frame.
  const clock = yield* Effect.clock
  const now = () => clock.unsafeCurrentTimeMillis()
  const checks = TokenBucket.make({ ...(options.checkRate ?? { perSecond: 2, burst: 20 }), now })
  const maxBuffered = options.maxBufferedBytes ?? 512 * 1024 * 1024
  const opens = TokenBucket.make({ ...(options.openRate ?? { perSecond: 5_000, burst: 10_000 }), now })
  const fibers = yield* FiberSet.make<unknown, unknown>()
  const runFork = yield* FiberSet.runtime(fibers)<never>()
  const links = new Set<Link>()
  const agents = new Map<string, Link>()
  let tunnels = 0
  const checkTimeoutMs = options.checkTimeoutMs ?? 10_000
  /** Checks waiting for the exposing agent's `ProbeResult`, by the hub's probe request id. */
  const probes = new Map<number, { readonly from: Link; readonly request: number; readonly to: Link; readonly timer: Fiber.RuntimeFiber<void> }>()
  let nextProbe = 1

  /** Calls `body` after `ms` on the clock, in a fiber of the relay (one per connection or check, never per frame). */
  const after = (ms: number, body: () => void): Fiber.RuntimeFiber<void> => runFork(Effect.delay(Effect.sync(body), ms))
  const stop = (fiber: Fiber.RuntimeFiber<unknown, unknown> | undefined) => fiber?.unsafeInterruptAsFork(FiberId.none)

  /** Runs `body` for `link`; an exception closes that link (1011) and is logged, never reaching the event loop. */
  const guard = (link: Link, body: () => void) => {
    try {
      body()
    } catch (error) {
      runFork(Effect.logError(`relay: internal error on a connection from ${link.connection.remoteAddress}`, error))
      link.connection.close(CloseCodes.Internal, "internal error")
    }
  }

  /**
   * Runs a policy effect off the hot path and calls back with its outcome, at most `maxDecisions` at once per link:
   * a flood of requests waits in line instead of holding every database connection of the hub.
   */
  const decide = <A>(link: Link, effect: Effect.Effect<A, RelayDenied>, done: (exit: Exit.Exit<A, RelayDenied>) => void) => {
    const start = () => {
      link.deciding++
      runFork(effect).addObserver((exit) => {
        link.deciding--
        guard(link, () => done(exit))
        const next = link.waiting.shift()
        if (next) next()
      })
    }
    if (link.deciding < maxDecisions) start()
    else link.waiting.push(start)
  }
  /** Whether `link` may start one more `Open`/`Reach`/`Check` for `name`; a refusal is recorded by the policy. */
  const admit = (link: Link, name: string): RelayRefusal | undefined => {
    const refusal = link.waiting.length >= maxWaiting || !opens.take(link.session!.agentId) ? "rate_limited" : undefined
    if (refusal) policy.refused(link.session!, name, refusal)
    return refusal
  }
  /**
   * Records a fact in the background. Not retried here: the policy retries and spools what already happened itself
   * (PgRelayPolicy.ts, FactRecorder.ts), so a failure reaching this point is final and only logged.
   */
  const record = (name: string, effect: Effect.Effect<void, RelayDenied>) => {
    runFork(effect.pipe(Effect.catchAllCause((cause) => Effect.logError(`relay: ${name} was not recorded`, cause))))
  }
  /**
   * A refused `Open`/`Reach`/`Check` costs its agent `RefusalCost` tokens instead of one: honest agents are rarely
   * refused, while one asking for names that do not exist (each refusal a database lookup) slows to a tenth of the
   * rate after its burst.
   */
  const charge = (link: Link, exit: Exit.Exit<unknown, RelayDenied>) => {
    if (Exit.isFailure(exit) && link.session) opens.take(link.session.agentId, RefusalCost - 1)
  }
  const denial = (exit: Exit.Exit<unknown, RelayDenied>) => {
    if (Exit.isSuccess(exit)) return { code: "Unavailable", message: "ok" }
    const failure = Cause.failureOption(exit.cause)
    return failure._tag === "Some"
      ? { code: failure.value.code, message: failure.value.message }
      : { code: "Unavailable", message: "policy failed" }
  }

  const violation = (link: Link, message: string) => {
    link.connection.send(new Protocol.Error({ code: "Protocol", message }))
    link.connection.close(CloseCodes.Protocol, message)
  }

  const closeTunnel = (t: Tunnel, reason: string, notify: Link | undefined) => {
    if (t.state === "closed") return
    const wasOpen = t.state === "open"
    t.state = "closed"
    // Data held while the policy decided is dropped: the reacher gets its connection window back.
    if (t.pendingBytes > 0) t.from.ledger.giveBack(t.pendingBytes)
    t.pending = []
    t.pendingBytes = 0
    tunnels--
    t.from.reaching--
    if (t.reserved) release(t.from, t.reserved)
    t.from.routes.delete(t.fromStream)
    t.to?.routes.delete(t.toStream)
    if (notify === t.from) notify.connection.send(trusted(Protocol.Reset, { stream: t.fromStream, reason }))
    else if (notify && notify === t.to) notify.connection.send(trusted(Protocol.Reset, { stream: t.toStream, reason }))
    if (wasOpen && t.info) {
      record(
        "TunnelClosed",
        policy.tunnelClosed(t.info, {
          bytesUp: t.bytesUp,
          bytesDown: t.bytesDown,
          durationMs: now() - t.openedAt,
          reason
        })
      )
    }
  }

  /**
   * A connection whose outgoing buffer holds more than the low-water mark and writes nothing for `stallMs` is not
   * reading: what others queued towards it holds their connection windows, so it is closed and they get them back.
   */
  const checkStalled = (link: Link, now: number) => {
    const buffered = link.connection.bufferedAmount
    const progressed = link.ledger.progressed() || buffered < link.lastBuffered
    link.lastBuffered = buffered
    if (buffered <= WebSocket.LowWaterMark || progressed) {
      link.stalledSince = undefined
      return
    }
    link.stalledSince ??= now
    if (now - link.stalledSince >= stallMs && link.state !== "closed") {
      link.connection.close(CloseCodes.SlowConsumer, "not reading: outgoing buffer stalled")
    }
  }

  /** A connection that lets its outgoing buffer grow past the cap is not reading: it is closed, not fed. */
  const checkBuffered = (link: Link) => {
    if (link.state !== "closed" && link.connection.bufferedAmount > maxLinkBuffered) {
      link.connection.close(CloseCodes.SlowConsumer, "not reading: outgoing buffer over its cap")
    }
  }

  /** Counts `n` bytes of `Data` from `link`; false (and the connection closed) when a window is exceeded. */
  const accountData = (link: Link, t: Tunnel, up: boolean, n: number): boolean => {
    if (n === 0) return violation(link, "empty Data frame"), false
    if (up) {
      t.bytesUp += n
      t.inflightUp += n
      if (t.inflightUp > window) return violation(link, "stream window exceeded"), false
    } else {
      t.bytesDown += n
      t.inflightDown += n
      if (t.inflightDown > window) return violation(link, "stream window exceeded"), false
    }
    if (!link.ledger.receive(n)) return violation(link, "connection window exceeded"), false
    return true
  }

  /** Takes back `n` credited bytes; false (and the connection closed) when they were not outstanding. */
  const accountCredit = (link: Link, t: Tunnel, up: boolean, n: number): boolean => {
    // The reacher credits what the exposer sent (down), the exposer what the reacher sent (up).
    if (up ? n > t.inflightDown : n > t.inflightUp) {
      return violation(link, "Credit beyond the bytes outstanding on the stream"), false
    }
    if (up) t.inflightDown -= n
    else t.inflightUp -= n
    return true
  }

  /** Forwards one stream frame, already accounted, to the other end of its open tunnel. */
  const forward = (t: Tunnel, up: boolean, message: Message) => {
    const peer = up ? t.to! : t.from
    const peerStream = up ? t.toStream : t.fromStream
    const sender = up ? t.from : t.to!
    switch (message._tag) {
      case "Data":
        peer.ledger.sendFor(sender.ledger, peerStream, message.payload)
        return checkBuffered(peer)
      case "Credit":
        return peer.connection.send(trusted(Protocol.Credit, { stream: peerStream, bytes: message.bytes }))
      case "End":
        // Frames without bytes are outside every window: each may be sent once, or a flood of them would fill the
        // peer's buffer for free.
        if (up ? t.endedUp : t.endedDown) return violation(sender, "End sent twice on a stream")
        if (up) t.endedUp = true
        else t.endedDown = true
        peer.connection.send(trusted(Protocol.End, { stream: peerStream }))
        if (t.endedUp && t.endedDown) closeTunnel(t, "closed", undefined)
        return
      case "Reset":
        return closeTunnel(t, message.reason, peer)
      case "Opened":
        if (up || t.confirmed) return violation(sender, "Opened sent twice, or by the opener")
        t.confirmed = true
        peer.connection.send(trusted(Protocol.Opened, { stream: peerStream }))
        return
      case "Error":
        if (up) return closeTunnel(t, message.code, peer)
        peer.connection.send(
          new Protocol.Error({ code: message.code, message: message.message, stream: peerStream }, true)
        )
        return closeTunnel(t, message.code, undefined)
    }
  }

  /** A frame of an existing stream (Data, Credit, End, Reset, Opened, Error): accounted, then held or forwarded. */
  const streamFrame = (link: Link, stream: number, message: Message) => {
    const t = link.routes.get(stream)
    // Frames of a stream that just closed race with its Reset; they are dropped, not a protocol error (its bytes are
    // given back to the sender's connection window, which counted them).
    if (!t) {
      if (message._tag === "Data" && message.payload.byteLength > 0) link.ledger.owe(message.payload.byteLength)
      return
    }
    const up = link === t.from && t.fromStream === stream
    if (message._tag === "Data" && (up ? t.endedUp : t.endedDown)) return violation(link, "Data after End")
    if (message._tag === "Data" && !accountData(link, t, up, message.payload.byteLength)) return
    if (message._tag === "Credit" && !accountCredit(link, t, up, message.bytes)) return
    if (t.state === "pending") {
      if (message._tag === "Reset" || message._tag === "Error") return closeTunnel(t, "aborted", undefined)
      // Before the stream opened, its opener can only have data and its EOF to send.
      const afterEnd = t.pending.length > 0 && t.pending[t.pending.length - 1]!._tag === "End"
      if (!(message._tag === "Data" || message._tag === "End") || afterEnd) {
        return violation(link, `${message._tag} before the stream opened`)
      }
      if (t.pending.length >= MaxPending) return violation(link, "too many frames before the stream opened")
      if (message._tag === "Data") t.pendingBytes += message.payload.byteLength
      t.pending.push(message)
      return
    }
    forward(t, up, message)
  }

  /** Takes a stream slot of `target` for a tunnel from `from`; what is full, if anything. */
  const reserve = (from: Link, target: Link): string | undefined => {
    if (target.serving >= maxStreams) return `carries ${maxStreams} streams already`
    const pair = from.pairs.get(target) ?? 0
    if (pair >= Math.max(1, Math.floor(maxStreams / 2))) return "has half its streams taken by this agent already"
    target.serving++
    from.pairs.set(target, pair + 1)
    return undefined
  }
  const release = (from: Link, target: Link) => {
    target.serving--
    const pair = (from.pairs.get(target) ?? 1) - 1
    if (pair === 0) from.pairs.delete(target)
    else from.pairs.set(target, pair)
  }
  /** The next even stream id of `target` that no live stream uses (ids wrap after 2^31 streams). */
  const freshId = (target: Link) => {
    let id = target.nextId
    while (target.routes.has(id)) id = id >= 0xffff_fffe ? 2 : id + 2
    target.nextId = id >= 0xffff_fffe ? 2 : id + 2
    return id
  }

  const open = (link: Link, message: Protocol.Open) => {
    const session = link.session!
    if (message.stream % 2 === 0 || link.routes.has(message.stream)) {
      return violation(link, `stream id ${message.stream} is not a fresh odd id`)
    }
    const refuse = (code: string, text: string) =>
      link.connection.send(new Protocol.Error({ code, message: text, stream: message.stream }))
    if (link.reaching >= maxStreams) {
      policy.refused(session, message.service, "too_many_streams")
      return refuse("TooManyStreams", `this connection already reaches through ${maxStreams} streams`)
    }
    if (admit(link, message.service)) return refuse("RateLimited", "too many tunnels opened; slow down")
    const t: Tunnel = {
      info: undefined,
      service: message.service,
      from: link,
      fromStream: message.stream,
      to: undefined,
      reserved: undefined,
      toStream: 0,
      state: "pending",
      pending: [],
      pendingBytes: 0,
      bytesUp: 0,
      bytesDown: 0,
      inflightUp: 0,
      inflightDown: 0,
      endedUp: false,
      endedDown: false,
      confirmed: false,
      openedAt: now()
    }
    tunnels++
    link.reaching++
    link.routes.set(message.stream, t)
    const route = Effect.suspend(() =>
      // A reacher that gave up while waiting in line costs no policy work (and no TunnelOpened).
      t.state === "closed"
        ? Effect.fail(new RelayDenied({ code: "Unavailable", message: "stream closed before it was decided" }))
        : policy.resolveReach(session, message.service)
    ).pipe(
      Effect.flatMap((to) => {
        const target = agents.get(to.agentId)
        if (!target || target.state !== "ready") {
          return Effect.fail(
            new RelayDenied({ code: "AgentOffline", message: `the agent exposing ${to.service} is offline` })
          )
        }
        if (t.state === "closed") {
          return Effect.fail(new RelayDenied({ code: "Unavailable", message: "stream closed before it was decided" }))
        }
        // Slots are taken here, in the one synchronous step between the decision and the record, so that decisions
        // running side by side cannot all pass the caps.
        const full = reserve(link, target)
        if (full) return Effect.fail(new RelayDenied({ code: "Unavailable", message: `the agent exposing ${to.service} ${full}` }))
        t.reserved = target
        const info: TunnelInfo = {
          tunnelId: Crypto.randomUUID(),
          from: session,
          to,
          remoteAddress: link.connection.remoteAddress
        }
        return Effect.as(policy.tunnelOpened(info), { info, target })
      })
    )
    decide(link, route, (exit) => {
      charge(link, exit)
      if (Exit.isFailure(exit)) {
        if (t.state === "closed") return
        const { code, message: text } = denial(exit)
        closeTunnel(t, code, undefined)
        link.connection.send(new Protocol.Error({ code, message: text, stream: t.fromStream }))
        return
      }
      const { info, target } = exit.value
      t.info = info
      if (t.state === "closed" || target.state !== "ready") {
        // The reacher gave up (or the exposer left) while the policy decided: the tunnel was recorded, so close it.
        if (t.state !== "closed") {
          closeTunnel(t, "AgentOffline", link)
        }
        record("TunnelClosed", policy.tunnelClosed(info, { bytesUp: 0, bytesDown: 0, durationMs: 0, reason: "aborted" }))
        return
      }
      t.to = target
      t.toStream = freshId(target)
      target.routes.set(t.toStream, t)
      t.state = "open"
      target.connection.send(trusted(Protocol.Open, { stream: t.toStream, service: info.to.service }))
      const pending = t.pending
      t.pending = []
      t.pendingBytes = 0
      for (const m of pending) {
        if (t.state === "open") forward(t, true, m)
        else if (m._tag === "Data") t.from.ledger.giveBack(m.payload.byteLength)
      }
    })
  }

  const request = (link: Link, id: number, effect: Effect.Effect<void, RelayDenied>) => {
    if (link.waiting.length >= maxWaiting) {
      return link.connection.send(new Protocol.Error({ code: "RateLimited", message: "too many requests waiting", request: id }))
    }
    decide(link, effect, (exit) => {
      if (link.state === "closed") return
      if (Exit.isSuccess(exit)) return link.connection.send(new Protocol.Ack({ request: id }))
      const { code, message } = denial(exit)
      link.connection.send(new Protocol.Error({ code, message, request: id }))
    })
  }

  /** A `Reach` or `Check`, admitted by the rate limit first. */
  const limited = (link: Link, id: number, name: string, then: () => void) => {
    if (!admit(link, name)) return then()
    link.connection.send(new Protocol.Error({ code: "RateLimited", message: "too many requests; slow down", request: id }))
  }

  /** A `Check`: resolved (and audited) like a `Reach`, then probed by the exposing agent. */
  const check = (link: Link, message: Protocol.Check) => {
    const route = policy.resolveReach(link.session!, message.name).pipe(
      Effect.flatMap((to) => {
        const target = agents.get(to.agentId)
        return !target || target.state !== "ready"
          ? Effect.fail(new RelayDenied({ code: "AgentOffline", message: `the agent exposing ${to.service} is offline` }))
          : Effect.succeed({ target, service: to.service })
      })
    )
    decide(link, route, (exit) => {
      charge(link, exit)
      if (link.state === "closed") return
      if (Exit.isFailure(exit) || exit.value.target.state !== "ready") {
        const { code, message: text } = Exit.isFailure(exit)
          ? denial(exit)
          : { code: "AgentOffline", message: `the agent exposing ${message.name} is offline` }
        return link.connection.send(new Protocol.Error({ code, message: text, request: message.request }))
      }
      const { target, service } = exit.value
      const id = nextProbe++
      const timer = after(checkTimeoutMs, () => {
        if (!probes.delete(id) || link.state === "closed") return
        link.connection.send(
          new Protocol.Error({
            code: "Unavailable",
            message: `the agent exposing ${service} did not answer the check within ${checkTimeoutMs / 1000} s`,
            request: message.request
          })
        )
      })
      probes.set(id, { from: link, request: message.request, to: target, timer })
      target.connection.send(new Protocol.Probe({ request: id, service }))
    })
  }

  const probeResult = (link: Link, message: Protocol.ProbeResult) => {
    const pending = probes.get(message.request)
    // A late answer (after the timeout) or one from another agent is dropped.
    if (!pending || pending.to !== link) return
    probes.delete(message.request)
    stop(pending.timer)
    if (pending.from.state !== "closed") {
      pending.from.connection.send(new Protocol.CheckResult({ request: pending.request, report: message.report }))
    }
  }

  const hello = (link: Link, message: Protocol.Hello) => {
    if (message.protocol !== Protocol.ProtocolVersion) {
      link.connection.send(
        new Protocol.Error({ code: "UnsupportedVersion", message: `hub speaks protocol ${Protocol.ProtocolVersion}` })
      )
      return link.connection.close(CloseCodes.UnsupportedVersion, "unsupported protocol version")
    }
    link.state = "auth"
    const connected = policy.authenticate(message, link.connection.remoteAddress).pipe(
      Effect.tap((session) =>
        policy.agentConnected(session, {
          remoteAddress: link.connection.remoteAddress,
          transport: link.connection.transport,
          agentVersion: message.agentVersion
        })
      )
    )
    decide(link, connected, (exit) => {
      if (link.state === "closed") {
        if (Exit.isSuccess(exit)) {
          record(
            "AgentDisconnected",
            policy.agentDisconnected(exit.value, {
              close: { code: CloseCodes.Normal, reason: "closed during hello" },
              durationMs: 0
            })
          )
        }
        return
      }
      if (Exit.isFailure(exit)) {
        const { code, message: text } = denial(exit)
        link.connection.send(new Protocol.Error({ code, message: text }))
        return link.connection.close(CloseCodes.Unauthorized, code)
      }
      const session = exit.value
      stop(link.timer)
      link.session = session
      link.state = "ready"
      const previous = agents.get(session.agentId)
      agents.set(session.agentId, link)
      if (previous && previous !== link) previous.connection.close(CloseCodes.Replaced, "replaced by a new connection")
      link.connection.send(
        new Protocol.Welcome({
          agentId: session.agentId,
          workspaceId: session.workspaceId,
          protocol: Protocol.ProtocolVersion,
          heartbeatMs: heartbeat.intervalMs,
          ...(session.tokenExpiresAt === undefined ? {} : { tokenExpiresAt: session.tokenExpiresAt })
        })
      )
      link.timer = runFork(Effect.ignore(Heartbeat.run(link.connection, heartbeat)))
    })
  }

  const onMessage = (link: Link, message: Message) => {
    if (link.state !== "ready") {
      if (link.state === "hello" && message._tag === "Hello") return hello(link, message)
      return violation(link, `${message._tag} before Welcome`)
    }
    switch (message._tag) {
      case "Data":
      case "Credit":
      case "End":
      case "Reset":
      case "Opened":
        return streamFrame(link, message.stream, message)
      case "Error":
        if (message.stream === undefined) return
        return streamFrame(link, message.stream, message)
      case "Open":
        return open(link, message)
      case "Expose":
        return request(link, message.request, policy.expose(link.session!, message))
      case "Unexpose":
        return request(link, message.request, policy.unexpose(link.session!, message.name))
      case "Reach":
        return limited(link, message.request, message.name, () =>
          request(
            link,
            message.request,
            Effect.asVoid(policy.resolveReach(link.session!, message.name)).pipe(Effect.onExit((exit) => Effect.sync(() => charge(link, exit))))
          ))
      case "Check":
        // Each Check makes the exposing agent probe its target (DNS, TCP, TLS, HTTP): a bucket of its own, far lower.
        if (!checks.take(link.session!.agentId)) {
          policy.refused(link.session!, message.name, "rate_limited")
          return link.connection.send(
            new Protocol.Error({ code: "RateLimited", message: "too many checks; slow down", request: message.request })
          )
        }
        return limited(link, message.request, message.name, () => check(link, message))
      case "ProbeResult":
        return probeResult(link, message)
      case "Ping":
        return link.connection.send(new Protocol.Pong({ nonce: message.nonce }))
      case "Pong":
        return
      default:
        return violation(link, `unexpected ${message._tag}`)
    }
  }

  const onClose = (link: Link, close: CloseInfo) => {
    // The relay's finalizer closes links itself; the carrier's close event for them comes later and is a no-op.
    if (link.state === "closed") return
    const was = link.state
    link.state = "closed"
    links.delete(link)
    link.waiting.length = 0
    link.ledger.close()
    stop(link.timer)
    for (const t of [...link.routes.values()]) {
      closeTunnel(t, "AgentDisconnected", t.from === link ? t.to : t.from)
    }
    for (const [id, p] of probes) {
      if (p.from !== link && p.to !== link) continue
      probes.delete(id)
      stop(p.timer)
      if (p.to === link && p.from.state !== "closed") {
        p.from.connection.send(
          new Protocol.Error({ code: "AgentOffline", message: "the exposing agent disconnected during the check", request: p.request })
        )
      }
    }
    if (was === "ready" && link.session) {
      if (agents.get(link.session.agentId) === link) agents.delete(link.session.agentId)
      record(
        "AgentDisconnected",
        policy.agentDisconnected(link.session, { close, durationMs: now() - link.connectedAt })
      )
    }
  }

  const accept = (connection: Connection) => {
    const link: Link = {
      connection,
      connectedAt: now(),
      state: "hello",
      session: undefined,
      routes: new Map(),
      nextId: 2,
      ledger: RelayWindow.make(connection, connectionWindow),
      reaching: 0,
      serving: 0,
      pairs: new Map(),
      stalledSince: undefined,
      lastBuffered: 0,
      deciding: 0,
      waiting: [],
      timer: undefined
    }
    links.add(link)
    link.timer = after(helloTimeoutMs, () => {
      if (link.state === "hello" || link.state === "auth") connection.close(CloseCodes.Timeout, "no Hello in time")
    })
    connection.setHandler({
      message: (message) => guard(link, () => onMessage(link, message)),
      close: (info) => guard(link, () => onClose(link, info))
    })
  }

  /** The hub-wide cap: while the hub buffers more than `maxBuffered`, the connections holding most are closed. */
  const sample = Effect.sync(() => {
    let total = 0
    const t = now()
    for (const link of links) {
      checkBuffered(link)
      checkStalled(link, t)
      total += link.connection.bufferedAmount
    }
    if (total <= maxBuffered) return
    const largest = [...links].sort((a, b) => b.connection.bufferedAmount - a.connection.bufferedAmount)
    for (const link of largest) {
      if (total <= maxBuffered) break
      total -= link.connection.bufferedAmount
      link.connection.close(CloseCodes.SlowConsumer, "not reading: the hub's buffers are full")
    }
  })
  yield* Effect.repeat(sample, Schedule.spaced(SampleEvery)).pipe(Effect.forkScoped)

  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      for (const p of probes.values()) stop(p.timer)
      probes.clear()
      // How each connection and tunnel ended is recorded now, while the fibers that record it can still run: the
      // carrier's close events would arrive only after this scope, and the FiberSet with it, is gone.
      for (const link of [...links]) {
        const stopped: CloseInfo = { code: CloseCodes.GoingAway, reason: "relay stopped" }
        onClose(link, stopped)
        link.connection.close(stopped.code, stopped.reason)
      }
      // Bounded: the policy retries a record a few times and then spools or logs it, well within 4 s.
      yield* FiberSet.awaitEmpty(fibers).pipe(Effect.timeout("4 seconds"), Effect.ignore)
    })
  )

  return Relay.of({
    accept,
    stats: () => {
      let bufferedBytes = 0
      for (const link of links) {
        bufferedBytes += link.connection.bufferedAmount
        for (const t of link.routes.values()) if (t.from === link) bufferedBytes += t.pendingBytes
      }
      return { connections: links.size, agents: agents.size, streams: tunnels, bufferedBytes }
    },
    disconnect: (agentId, code, reason) => {
      const link = agents.get(agentId)
      if (!link) return false
      link.connection.close(code, reason)
      return true
    }
  })
})

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
