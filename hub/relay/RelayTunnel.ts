/**
 * Tunnels, the relay's hot path: a reaching agent's `Open` is decided by the policy and joined to a fresh stream of
 * the exposing agent; from then on every frame of the stream is accounted against the stream window (`window` bytes in
 * flight per direction) and both connections' windows, and forwarded with its stream id rewritten, without buffering.
 * Only what the reacher sends while the policy decides is held, bounded by the window and `MAX_PENDING`. Frames are
 * plain synchronous calls, no Effect per frame: the policy runs once per tunnel, at its open and its close.
 */
import * as Crypto from "node:crypto"
import { Effect, Exit } from "effect"
import * as Protocol from "../../core/Protocol.ts"
import type { Message } from "../../core/Protocol.ts"
import { RelayDenied } from "../../core/RelayPolicy.ts"
import type { RelayPolicyService, TunnelInfo } from "../../core/RelayPolicy.ts"
import { CLOSE_CODES } from "../../core/Transport.ts"
import { trusted } from "../../transports/Framing.ts"
import { type Decided, type Decisions, denial, type Link, type Tunnel, violation } from "./RelayLink.ts"

/**
 * Frames a reacher may send on a stream before the policy has decided. Window-bounded in bytes, but frames without
 * bytes (End, Opened) would otherwise pile up without bound; an honest agent sends a handful.
 */
const MAX_PENDING = 1_024

/** The tunnels of one relay: what they are decided and bounded by, and how many there are. */
export interface Tunnels {
  readonly policy: RelayPolicyService
  readonly decisions: Decisions
  /** Authenticated links by agent: the exposers a tunnel can be joined to. */
  readonly agents: ReadonlyMap<string, Link>
  /** The clock in ms (durations). */
  readonly now: () => number
  /** Bytes in flight per stream and direction; more is a protocol violation. */
  readonly window: number
  /** Streams one link may reach through, and serve. */
  readonly maxStreams: number
  /** A link whose outgoing buffer passes this is closed. */
  readonly maxLinkBuffered: number
  /** Tunnels pending or open. */
  count: number
}

/** Makes the (empty) tunnels of a relay. */
export const make = (options: Omit<Tunnels, "count">): Tunnels => ({ ...options, count: 0 })

/** A frame of an existing stream (Data, Credit, End, Reset, Opened, Error): accounted, then held or forwarded. */
export const frame = (tunnels: Tunnels, link: Link, stream: number, message: Message) => {
  const t = link.routes.get(stream)
  // Frames of a stream that just closed race with its Reset; they are dropped, not a protocol error (its bytes are
  // given back to the sender's connection window, which counted them).
  if (!t) {
    if (message._tag === "Data" && message.payload.byteLength > 0) link.ledger.owe(message.payload.byteLength)
    return
  }
  const up = link === t.from && t.fromStream === stream
  if (message._tag === "Data" && (up ? t.endedUp : t.endedDown)) return violation(link, "Data after End")
  if (message._tag === "Data" && !accountData(tunnels, link, t, up, message.payload.byteLength)) return
  if (message._tag === "Credit" && !accountCredit(link, t, up, message.bytes)) return
  if (t.state === "pending") {
    if (message._tag === "Reset" || message._tag === "Error") return close(tunnels, t, "aborted", undefined)
    // Before the stream opened, its opener can only have data and its EOF to send.
    const afterEnd = t.pending.length > 0 && t.pending[t.pending.length - 1]!._tag === "End"
    if (!(message._tag === "Data" || message._tag === "End") || afterEnd) {
      return violation(link, `${message._tag} before the stream opened`)
    }
    if (t.pending.length >= MAX_PENDING) return violation(link, "too many frames before the stream opened")
    if (message._tag === "Data") t.pendingBytes += message.payload.byteLength
    t.pending.push(message)
    return
  }
  forward(tunnels, t, up, message)
}

/** Counts `n` bytes of `Data` from `link`; false (and the connection closed) when a window is exceeded. */
const accountData = (tunnels: Tunnels, link: Link, t: Tunnel, up: boolean, n: number): boolean => {
  if (n === 0) return violation(link, "empty Data frame"), false
  if (up) {
    t.bytesUp += n
    t.inflightUp += n
    if (t.inflightUp > tunnels.window) return violation(link, "stream window exceeded"), false
  } else {
    t.bytesDown += n
    t.inflightDown += n
    if (t.inflightDown > tunnels.window) return violation(link, "stream window exceeded"), false
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
const forward = (tunnels: Tunnels, t: Tunnel, up: boolean, message: Message) => {
  const peer = up ? t.to! : t.from
  const peerStream = up ? t.toStream : t.fromStream
  const sender = up ? t.from : t.to!
  switch (message._tag) {
    case "Data":
      peer.ledger.sendFor(sender.ledger, peerStream, message.payload)
      return checkBuffered(tunnels, peer)
    case "Credit":
      return peer.connection.send(trusted(Protocol.Credit, { stream: peerStream, bytes: message.bytes }))
    case "End":
      // Frames without bytes are outside every window: each may be sent once, or a flood of them would fill the
      // peer's buffer for free.
      if (up ? t.endedUp : t.endedDown) return violation(sender, "End sent twice on a stream")
      if (up) t.endedUp = true
      else t.endedDown = true
      peer.connection.send(trusted(Protocol.End, { stream: peerStream }))
      if (t.endedUp && t.endedDown) close(tunnels, t, "closed", undefined)
      return
    case "Reset":
      return close(tunnels, t, message.reason, peer)
    case "Opened":
      if (up || t.confirmed) return violation(sender, "Opened sent twice, or by the opener")
      t.confirmed = true
      peer.connection.send(trusted(Protocol.Opened, { stream: peerStream }))
      return
    case "Error":
      if (up) return close(tunnels, t, message.code, peer)
      peer.connection.send(
        new Protocol.Error({ code: message.code, message: message.message, stream: peerStream }, true)
      )
      return close(tunnels, t, message.code, undefined)
  }
}

/** A connection that lets its outgoing buffer grow past the cap is not reading: it is closed, not fed. */
export const checkBuffered = (tunnels: Tunnels, link: Link) => {
  if (link.state !== "closed" && link.connection.bufferedAmount > tunnels.maxLinkBuffered) {
    link.connection.close(CLOSE_CODES.SlowConsumer, "not reading: outgoing buffer over its cap")
  }
}

/**
 * Ends tunnel `t` for `reason` (a `Reset` reason, an error code, or "closed" when both directions ended): its slots
 * and held bytes are given back, `notify` (one of its ends, if any) gets a `Reset`, and an open tunnel is recorded.
 */
const close = (tunnels: Tunnels, t: Tunnel, reason: string, notify: Link | undefined) => {
  if (t.state === "closed") return
  const wasOpen = t.state === "open"
  t.state = "closed"
  // Data held while the policy decided is dropped: the reacher gets its connection window back.
  if (t.pendingBytes > 0) t.from.ledger.giveBack(t.pendingBytes)
  t.pending = []
  t.pendingBytes = 0
  tunnels.count--
  t.from.reaching--
  if (t.reserved) release(t.from, t.reserved)
  t.from.routes.delete(t.fromStream)
  t.to?.routes.delete(t.toStream)
  if (notify === t.from) notify.connection.send(trusted(Protocol.Reset, { stream: t.fromStream, reason }))
  else if (notify && notify === t.to) notify.connection.send(trusted(Protocol.Reset, { stream: t.toStream, reason }))
  if (wasOpen && t.info) {
    const totals = { bytesUp: t.bytesUp, bytesDown: t.bytesDown, durationMs: tunnels.now() - t.openedAt, reason }
    tunnels.decisions.record("TunnelClosed", tunnels.policy.tunnelClosed(t.info, totals))
  }
}

/** `link` disconnected: each of its tunnels ends, and the agent at the other end gets a `Reset`. */
export const closeAll = (tunnels: Tunnels, link: Link) => {
  for (const t of [...link.routes.values()]) close(tunnels, t, "AgentDisconnected", t.from === link ? t.to : t.from)
}

/**
 * Ends every open tunnel of `links` whose record `matches` (a revoked share's): both ends get a `Reset` with `reason`,
 * which is also the reason recorded. Returns how many were ended.
 */
export const closeWhere = (
  tunnels: Tunnels,
  links: Iterable<Link>,
  matches: (info: TunnelInfo) => boolean,
  reason: string
): number => {
  const ending = new Set<Tunnel>()
  for (const link of links) {
    for (const t of link.routes.values()) if (t.state === "open" && t.info && matches(t.info)) ending.add(t)
  }
  for (const t of ending) {
    t.to?.connection.send(trusted(Protocol.Reset, { stream: t.toStream, reason }))
    close(tunnels, t, reason, t.from)
  }
  return ending.size
}

/**
 * An `Open` from `link`: refused at once past its stream cap or rate limit; else a pending tunnel that holds what the
 * reacher sends until the policy has resolved the name, picked the exposer and recorded the tunnel (fail closed).
 */
export const open = (tunnels: Tunnels, link: Link, message: Protocol.Open) => {
  if (message.stream % 2 === 0 || link.routes.has(message.stream)) {
    return violation(link, `stream id ${message.stream} is not a fresh odd id`)
  }
  const refuse = (code: string, text: string) =>
    link.connection.send(new Protocol.Error({ code, message: text, stream: message.stream }))
  if (link.reaching >= tunnels.maxStreams) {
    tunnels.policy.refused(link.session!, message.service, "too_many_streams")
    return refuse("TooManyStreams", `this connection already reaches through ${tunnels.maxStreams} streams`)
  }
  if (tunnels.decisions.admit(link, message.service)) return refuse("RateLimited", "too many tunnels opened; slow down")
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
    openedAt: tunnels.now()
  }
  tunnels.count++
  link.reaching++
  link.routes.set(message.stream, t)
  tunnels.decisions.decide(link, route(tunnels, t), (exit) => decided(tunnels, t, exit))
}

/** The policy's part of opening `t`: resolve the name, reserve the exposer's slots, record the tunnel. */
const route = (tunnels: Tunnels, t: Tunnel) => {
  const session = t.from.session!
  const closedBefore = () => new RelayDenied({ code: "Unavailable", message: "stream closed before it was decided" })
  return Effect.suspend(() =>
    // A reacher that gave up while waiting in line costs no policy work (and no TunnelOpened).
    t.state === "closed" ? Effect.fail(closedBefore()) : tunnels.policy.resolveReach(session, t.service)
  ).pipe(
    Effect.flatMap((to) => {
      const target = tunnels.agents.get(to.agentId)
      if (!target || target.state !== "ready") {
        const offline = `the agent exposing ${to.service} is offline`
        return Effect.fail(new RelayDenied({ code: "AgentOffline", message: offline }))
      }
      if (t.state === "closed") return Effect.fail(closedBefore())
      // Slots are taken here, in the one synchronous step between the decision and the record, so that decisions
      // running side by side cannot all pass the caps.
      const full = reserve(tunnels, t.from, target)
      if (full) {
        return Effect.fail(new RelayDenied({ code: "Unavailable", message: `the agent exposing ${to.service} ${full}` }))
      }
      t.reserved = target
      const info: TunnelInfo = {
        tunnelId: Crypto.randomUUID(),
        from: session,
        to,
        remoteAddress: t.from.connection.remoteAddress
      }
      return Effect.as(tunnels.policy.tunnelOpened(info), { info, target })
    })
  )
}

/** The policy decided on `t`: refused, given up meanwhile (closed again, and recorded so), or joined and flowing. */
const decided = (
  tunnels: Tunnels,
  t: Tunnel,
  exit: Decided<{ readonly info: TunnelInfo; readonly target: Link }>
) => {
  const link = t.from
  tunnels.decisions.charge(link, exit)
  if (Exit.isFailure(exit)) {
    if (t.state === "closed") return
    const { code, message: text } = denial(exit)
    close(tunnels, t, code, undefined)
    link.connection.send(new Protocol.Error({ code, message: text, stream: t.fromStream }))
    return
  }
  const { info, target } = exit.value
  t.info = info
  if (t.state === "closed" || target.state !== "ready") {
    // The reacher gave up (or the exposer left) while the policy decided: the tunnel was recorded, so close it.
    if (t.state !== "closed") close(tunnels, t, "AgentOffline", link)
    const totals = { bytesUp: 0, bytesDown: 0, durationMs: 0, reason: "aborted" }
    tunnels.decisions.record("TunnelClosed", tunnels.policy.tunnelClosed(info, totals))
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
    if (t.state === "open") forward(tunnels, t, true, m)
    else if (m._tag === "Data") t.from.ledger.giveBack(m.payload.byteLength)
  }
}

/** Takes a stream slot of `target` for a tunnel from `from`; what is full, if anything. */
const reserve = (tunnels: Tunnels, from: Link, target: Link): string | undefined => {
  if (target.serving >= tunnels.maxStreams) return `carries ${tunnels.maxStreams} streams already`
  const pair = from.pairs.get(target) ?? 0
  if (pair >= Math.max(1, Math.floor(tunnels.maxStreams / 2))) return "has half its streams taken by this agent already"
  target.serving++
  from.pairs.set(target, pair + 1)
  return undefined
}

/** Gives back the slot `reserve` took. */
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
