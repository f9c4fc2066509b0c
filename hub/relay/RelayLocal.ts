/**
 * The hub as a reaching side of its own relay, for public links: an in-process connection attached to the relay as a
 * pre-authenticated session (the link's), with the agents' own stream engine (transports/Mux.ts) on the hub's end.
 * Each `open` is an `Open` for the service like an agent's reach: decided and recorded by the policy (TunnelOpened
 * naming the link, TunnelClosed with its byte counts), flow-controlled by the same stream and connection windows, and
 * handed back as a socket-like stream that node's HTTP client can use as its connection (SocketPair.ts). The exposing
 * agent sees an ordinary stream and stays a plain TCP forwarder.
 */
import { Data, type Message } from "../../core/Protocol.ts"
import type { Session } from "../../core/RelayPolicy.ts"
import type { CloseInfo, Connection, ConnectionHandler } from "../../core/Transport.ts"
import { trusted } from "../../transports/Framing.ts"
import * as Mux from "../../transports/Mux.ts"
import type { RelayService } from "./Relay.ts"
import * as SocketPair from "./SocketPair.ts"

/** One end of the in-process connection: messages are delivered to the other end in order, on a microtask. */
interface End {
  handler: ConnectionHandler | undefined
  readonly early: Array<Message>
  queue: Array<Message>
  written: Array<() => void>
  scheduled: boolean
  closed: boolean
  received: number
}

/** Two connected ends that pass messages as objects (no codec: both ends are this process). */
const makePair = (): readonly [Connection, Connection] => {
  const ends: [End, End] = [0, 1].map(() => ({
    handler: undefined,
    early: [],
    queue: [],
    written: [],
    scheduled: false,
    closed: false,
    received: 0
  })) as unknown as [End, End]
  const deliver = (to: End, message: Message) => {
    to.received++
    if (to.handler) to.handler.message(message)
    else to.early.push(message)
  }
  const flush = (from: End, to: End) => {
    from.scheduled = false
    const queue = from.queue
    const written = from.written
    from.queue = []
    from.written = []
    for (const message of queue) if (!to.closed) deliver(to, message)
    for (const done of written) done()
  }
  const finish = (info: CloseInfo) => {
    for (const end of ends) {
      if (end.closed) continue
      end.closed = true
      end.handler?.close(info)
    }
  }
  const connection = (self: End, peer: End): Connection => {
    const write = (message: Message, written?: () => void) => {
      if (self.closed) return written?.()
      self.queue.push(message)
      if (written) self.written.push(written)
      if (!self.scheduled) {
        self.scheduled = true
        queueMicrotask(() => flush(self, peer))
      }
    }
    return {
      transport: "local",
      remoteAddress: "hub",
      send: (message) => write(message),
      sendData: (stream, payload, written) => write(trusted(Data, { stream, payload }), written),
      bufferedAmount: 0,
      congested: false,
      get received() {
        return self.received
      },
      get closed() {
        return self.closed
      },
      setHandler: (handler) => {
        self.handler = handler
        for (const message of self.early.splice(0)) handler.message(message)
      },
      close: (code, reason) => queueMicrotask(() => finish({ code, reason }))
    }
  }
  return [connection(ends[0], ends[1]), connection(ends[1], ends[0])]
}

/** The hub reaching through its relay as one session. */
export interface LocalReach {
  /**
   * Opens a stream to `service`; the returned socket is the reaching end (bytes written to it flow at once, before the
   * policy decided). A refusal resets it with the policy's code as the socket error's `code` (`AgentOffline`,
   * `ServiceNotFound`, `Unavailable` when the tunnel could not be recorded).
   */
  readonly open: (service: string, remoteAddress: string) => SocketPair.PairSocket
  /** Streams open now. */
  readonly size: () => number
  /** Resets every stream and detaches from the relay. */
  readonly close: () => void
}

/** Attaches a connection of the hub to `relay` as `session` (a link's: `session.link` set). */
export const attach = (relay: RelayService, session: Session): LocalReach => {
  const [hubEnd, relayEnd] = makePair()
  const sockets = new Map<number, SocketPair.PairSocket>()
  const mux = Mux.make(hubEnd, {
    onStreamClosed: (closed) => {
      const socket = sockets.get(closed.stream)
      sockets.delete(closed.stream)
      // Mux resets the socket right after this call: its peer (the HTTP client's end) sees why.
      if (socket && closed.reason !== "closed") socket.resetReason = closed.reason
    }
  })
  hubEnd.setHandler({
    message: (message) => void mux.handle(message),
    close: () => mux.closeAll("HubDisconnected"),
    drain: mux.drain
  })
  relay.attach(session, relayEnd)
  return {
    open: (service, remoteAddress) => {
      const [client, engine] = SocketPair.make(remoteAddress)
      const id = mux.open(service, engine as unknown as import("node:net").Socket)
      sockets.set(id, engine)
      return client
    },
    size: () => sockets.size,
    close: () => {
      mux.closeAll("HubShutdown")
      relayEnd.close(1001, "link closed")
    }
  }
}
