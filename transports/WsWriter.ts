/**
 * How the WebSocket carrier (WebSocket.ts) writes frames: straight to the socket of `ws`, the frames of one turn of the
 * event loop in one writev (corked until the turn's callback ends), small frames packed into one batch message once
 * the peer reads batches, and the congestion flag its backpressure reads (above HIGH_WATER_MARK, until LOW_WATER_MARK).
 */
import type * as Net from "node:net"
import { WebSocket } from "ws"
import type { Codec } from "../core/Transport.ts"

/**
 * Connection-level flow control: above 2 MiB queued in user space the owner pauses its sources, and resumes under
 * 512 KiB. At ~1 GB/s that is ~2 ms of data: enough to keep the kernel buffer fed, small next to the stream windows.
 */
export const HIGH_WATER_MARK = 2 * 1024 * 1024

/** See `HIGH_WATER_MARK`. */
export const LOW_WATER_MARK = 512 * 1024

/**
 * Frames up to this size go into a batch; larger ones are sent on their own. Copying a small frame into the batch
 * costs less than the WebSocket message it saves (a header to build and parse, a write into the socket's queue, an
 * event); a 64 KiB Data chunk is worth neither the copy nor the delay.
 */
export const MAX_BATCHED_FRAME = 4 * 1024

/**
 * Writes WebSocket messages straight to the socket of `ws`, each as one buffer when small: ws's sender would build an
 * options object and a header per message and hand the socket two writes (header, then payload), a measurable share of
 * the hub's CPU per small message (perf: ws send and the stream writes it makes). Binary codecs' frames go as binary
 * messages, the `ws` codec's as text messages (its frames are ASCII or UTF-8: a string is encoded here, as ws would).
 * Order with ws's own frames (pong, close) holds because ws writes those to the socket synchronously too: no
 * compression is negotiated, so its sender never queues. A client's frames carry the mask bit with an all-zero key (as
 * `dial`'s generateMask), so their payload goes unmasked. Once ws is no longer open, a message is dropped and its
 * callback told so, as ws does.
 */
const directFrames = (ws: WebSocket, socket: Net.Socket, binary: boolean) => {
  // FIN and the opcode (binary 0x2, text 0x1).
  const first = binary ? 0x82 : 0x81
  const masked = !(ws as unknown as { _isServer: boolean })._isServer
  const headerSize = (length: number) => (length <= 125 ? 2 : length <= 0xffff ? 4 : 10) + (masked ? 4 : 0)
  const putHeader = (out: Buffer, length: number) => {
    // Then the length in 7, 7+16 or 7+64 bits.
    out[0] = first
    let size = 2
    if (length <= 125) {
      out[1] = length
    } else if (length <= 0xffff) {
      out[1] = 126
      out.writeUInt16BE(length, 2)
      size = 4
    } else {
      out[1] = 127
      out.writeUInt32BE(0, 2)
      out.writeUInt32BE(length, 6)
      size = 10
    }
    if (masked) {
      out[1] |= 0x80
      out.writeUInt32BE(0, size)
      size += 4
    }
    return size
  }
  return (frame: Uint8Array | string, sent: (error?: Error | null) => void) => {
    if (ws.readyState !== WebSocket.OPEN) {
      process.nextTick(sent, new Error(`WebSocket is not open: readyState ${ws.readyState}`))
      return
    }
    const payload = typeof frame === "string" ? Buffer.from(frame) : frame
    const length = payload.byteLength
    if (length <= MAX_BATCHED_FRAME) {
      const out = Buffer.allocUnsafe(headerSize(length) + length)
      out.set(payload, putHeader(out, length))
      socket.write(out, sent)
      return
    }
    // A large payload is not worth a copy: header and payload go as two writes of one corked turn.
    const head = Buffer.allocUnsafe(headerSize(length))
    putHeader(head, length)
    socket.write(head)
    socket.write(payload, sent)
  }
}

/** The frame writer of one connection. */
export interface FrameWriter {
  /** Writes a frame (corked until the end of the turn; batched when small and batching is on); `sent` when written. */
  readonly write: (frame: Uint8Array | string, sent?: (error?: Error | null) => void) => void
  /** Sends the frames waiting for a batch now (before a close frame). */
  readonly flush: () => void
  /** The default `sent`: clears congestion, and calls `drain`, once the socket's buffer is below LOW_WATER_MARK. */
  readonly onSent: () => void
  /** Bytes waiting for a batch, not yet handed to the socket. */
  readonly queuedBytes: () => number
  /** Whether more than HIGH_WATER_MARK waits to be sent (and has not drained below LOW_WATER_MARK since). */
  readonly congested: () => boolean
  /** The peer reads batch frames: small frames of one turn leave as one message from now on. */
  readonly enableBatching: () => void
}

/** The frame writer of `ws` speaking `codec`; `drain` is called when a congested connection drains. */
export const make = (ws: WebSocket, codec: Codec, drain: () => void): FrameWriter => {
  let congested = false
  const onSent = () => {
    if (congested && ws.bufferedAmount <= LOW_WATER_MARK) {
      congested = false
      drain()
    }
  }
  // Frames sent in one turn of the event loop (an Open with its first Data, the Credits and Data of one TCP read,
  // the replies to a burst of frames) leave in one writev: each syscall on loopback also runs the receiver's TCP
  // stack, and was the hub's largest cost when opening streams. The uncork runs on nextTick, at the end of the I/O
  // callback that sent the frames. Deferring it to setImmediate (after every callback of the turn) coalesced several
  // sockets' frames into one writev, but held each frame back while the process handled the rest of its turn, and on a
  // loaded 2-core machine a preemption in between: pgbench -S through the relay fell from 302 to 61 tps (median of 3
  // interleaved rounds, same run, load average ~28), so frames leave as soon as their callback ends.
  const socket = (ws as unknown as { _socket: Net.Socket })._socket
  const sendFrame = directFrames(ws, socket, codec.binary)
  let corked = false
  // Once the peer reads batch frames, the small frames of a turn wait here and leave as one WebSocket message.
  const pack = codec.batch
  let batching = false
  let queue: Array<Uint8Array> = []
  let queueSent: Array<(error?: Error | null) => void> = []
  let queuedBytes = 0
  const flush = () => {
    if (queue.length === 0) return
    const frames = queue
    const sent = queueSent
    queue = []
    queueSent = []
    queuedBytes = 0
    if (frames.length === 1) return sendFrame(frames[0]!, sent[0]!)
    sendFrame(pack!(frames), (error) => {
      for (const callback of sent) callback(error)
    })
  }
  const uncork = () => {
    flush()
    corked = false
    socket.uncork()
  }
  const write = (frame: Uint8Array | string, sent: (error?: Error | null) => void = onSent) => {
    if (!corked) {
      corked = true
      socket.cork()
      process.nextTick(uncork)
    }
    if (batching && typeof frame !== "string" && frame.byteLength <= MAX_BATCHED_FRAME) {
      queue.push(frame)
      queueSent.push(sent)
      queuedBytes += frame.byteLength
    } else {
      // A large frame is not copied into a batch; the frames queued before it leave first, in order.
      flush()
      sendFrame(frame, sent)
    }
    if (!congested && ws.bufferedAmount + queuedBytes > HIGH_WATER_MARK) congested = true
  }
  return {
    write,
    flush,
    onSent,
    queuedBytes: () => queuedBytes,
    congested: () => congested,
    enableBatching: () => {
      if (pack && codec.unbatch) batching = true
    }
  }
}
