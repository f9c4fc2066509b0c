/**
 * The in-memory transport for tests: a pair of connections in one process that still encodes every message with a
 * real codec (msgpack by default), so frame limits and garbled frames behave as on the wire.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import type { Message } from "../core/Protocol.ts"
import { CLOSE_CODES, TransportError } from "../core/Transport.ts"
import type { CloseInfo, Codec, Connection, ConnectionHandler, Transport } from "../core/Transport.ts"
import { deliverGuarded, reportInternal } from "./Framing.ts"
import { codec as msgpack } from "./Msgpack.ts"
import { HIGH_WATER_MARK, LOW_WATER_MARK } from "./WebSocket.ts"

/** One end of a memory pair, with a hook to write raw frames (for fuzzing). */
export interface MemoryConnection extends Connection {
  /** Delivers a raw frame to the peer as if it came off the wire. */
  readonly sendFrame: (frame: Uint8Array | string) => void
}

const frameLength = (frame: Uint8Array | string) => (typeof frame === "string" ? frame.length : frame.byteLength)

/**
 * Makes two connected ends. Frames are delivered in order on a microtask, so a sender never re-enters its
 * peer's handler synchronously.
 */
export const makePair = (codec: Codec = msgpack): readonly [MemoryConnection, MemoryConnection] => {
  interface End {
    handler: ConnectionHandler | undefined
    early: Array<Message>
    closeInfo: CloseInfo | undefined
    closing: boolean
    congested: boolean
    received: number
    queued: Array<Uint8Array | string>
    queuedBytes: number
    scheduled: boolean
  }
  const ends: [End, End] = [0, 1].map(() => ({
    handler: undefined,
    early: [],
    closeInfo: undefined,
    closing: false,
    congested: false,
    received: 0,
    queued: [],
    queuedBytes: 0,
    scheduled: false
  })) as unknown as [End, End]

  const finish = (end: End, info: CloseInfo) => {
    if (end.closeInfo) return
    end.closing = true
    end.closeInfo = info
    end.queued = []
    end.queuedBytes = 0
    end.handler?.close(info)
  }
  const closeBoth = (code: number, reason: string) => {
    ends[0].closing = ends[1].closing = true
    queueMicrotask(() => {
      finish(ends[0], { code, reason })
      finish(ends[1], { code, reason })
    })
  }

  const failed = (error: unknown) => {
    reportInternal("memory", "memory", error)
    closeBoth(CLOSE_CODES.Internal, "internal error")
  }

  const flush = (from: End, to: End) => {
    from.scheduled = false
    const frames = from.queued
    from.queued = []
    from.queuedBytes = 0
    for (const frame of frames) {
      if (to.closeInfo) return
      to.received++
      let message: Message
      try {
        message = codec.decode(frame)
      } catch (error) {
        const code = error instanceof TransportError && error.reason === "FrameTooLarge"
          ? CLOSE_CODES.FrameTooLarge
          : CLOSE_CODES.Protocol
        return closeBoth(code, error instanceof TransportError ? error.message : "undecodable frame")
      }
      if (to.handler) deliverGuarded(to.handler.message, message, failed)
      else to.early.push(message)
    }
    if (from.congested && from.queuedBytes <= LOW_WATER_MARK) {
      from.congested = false
      from.handler?.drain?.()
    }
  }

  const make = (self: End, peer: End): MemoryConnection => {
    const write = (frame: Uint8Array | string) => {
      if (self.closing) return
      // The encoder may hand back a view of a buffer the caller reuses; a copy models the kernel taking the bytes.
      self.queued.push(typeof frame === "string" ? frame : Buffer.from(frame))
      self.queuedBytes += frameLength(frame)
      if (self.queuedBytes > HIGH_WATER_MARK) self.congested = true
      if (!self.scheduled) {
        self.scheduled = true
        queueMicrotask(() => flush(self, peer))
      }
    }
    return {
      transport: "memory",
      remoteAddress: "memory",
      send: (message) => write(codec.encode(message)),
      sendData: (stream, payload, written) => {
        write(codec.encodeData(stream, payload))
        // The kernel's part is modelled by the queue: a frame counts as written once queued (or dropped when closed).
        if (written) queueMicrotask(written)
      },
      sendFrame: write,
      get bufferedAmount() {
        return self.queuedBytes
      },
      get congested() {
        return self.congested
      },
      get received() {
        return self.received
      },
      get closed() {
        return self.closing
      },
      setHandler: (h) => {
        self.handler = h
        const early = self.early
        self.early = []
        for (const message of early) {
          if (self.closing) break
          deliverGuarded(h.message, message, failed)
        }
        if (self.closeInfo) h.close(self.closeInfo)
      },
      close: (code, reason) => {
        if (self.closing) return
        // Frames already written are still delivered before the close, as a WebSocket close frame would be.
        self.closing = true
        queueMicrotask(() => {
          if (self.scheduled) flush(self, peer)
          finish(self, { code, reason })
          finish(peer, { code, reason })
        })
      }
    }
  }
  return [make(ends[0], ends[1]), make(ends[1], ends[0])]
}

/**
 * An in-memory transport: `dial` makes a pair and hands the far end to `accept`, as a hub's server would.
 */
export const makeTransport = (accept: (connection: Connection) => void, codec: Codec = msgpack): Transport => ({
  name: "memory",
  dial: (_url: string): Effect.Effect<Connection, TransportError, Scope.Scope> =>
    Effect.acquireRelease(
      Effect.sync(() => {
        const [client, server] = makePair(codec)
        accept(server)
        return client as Connection
      }),
      (connection) => Effect.sync(() => connection.close(CLOSE_CODES.Normal, "client closed"))
    )
})
