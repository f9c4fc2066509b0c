/**
 * The carrier of the `tcp` transport plugin (Tcp.ts): a binary codec's frames on the TCP stream itself (TLS under a `wss://` hub), each
 * behind its length, without the WebSocket layer — no frame header to build, mask and parse, and no second stream
 * object between the socket and the codec. It starts as an HTTP upgrade (`Upgrade: connect-tcp`) on the hub's agent
 * path, so it needs no port of its own and passes through the hub's TLS and path dispatch as the WebSocket plugins do.
 *
 *   frame  [length u32 BE][msgpack codec frame]                  length 1..MAX_FRAME
 *   close  [0x80000000 | length u32 BE][code u16 BE][reason]    the sender ends its side of the stream after it
 *
 * The close flag lives in the length, outside every frame's bytes, so no payload can pass for a close.
 *
 * The frames one callback sends leave as one write: small ones copied into one buffer (a 64 B request is cheaper to
 * copy than to hand to the socket as a write of its own), large ones (a 64 KiB Data chunk) written as they are.
 */
import * as Http from "node:http"
import * as Https from "node:https"
import type * as Net from "node:net"
import type { Duplex } from "node:stream"
import { Duration, Effect } from "effect"
import type { Scope } from "effect"
import { MAX_FRAME } from "../core/Protocol.ts"
import type { Message } from "../core/Protocol.ts"
import { CLOSE_CODES, TransportError } from "../core/Transport.ts"
import type { CloseInfo, Codec, Connection, ConnectionHandler, DialOptions } from "../core/Transport.ts"
import { deliverGuarded, protocolError, reportInternal } from "./Framing.ts"

/** The name of the plugin. */
export const TRANSPORT = "tcp"

/** The `Upgrade` token a `tcp` connection starts with. */
export const UPGRADE = "connect-tcp"

/** Queued-bytes marks of connection-level flow control (as the WebSocket carrier's; see WebSocket.ts). */
const HIGH_WATER_MARK = 2 * 1024 * 1024
const LOW_WATER_MARK = 512 * 1024

/** Frames up to this size are copied into the one buffer of their turn; larger ones are written as they are. */
const MAX_COPIED_FRAME = 4 * 1024

/** The flag of a close frame in its length prefix (frames are at most `MAX_FRAME`, far below it). */
const CLOSE_FLAG = 0x8000_0000
const CLOSE_TIMEOUT: Duration.DurationInput = "2 seconds"

const closeCodeOf = (error: unknown): number =>
  error instanceof TransportError && error.reason === "FrameTooLarge" ? CLOSE_CODES.FrameTooLarge : CLOSE_CODES.Protocol

/**
 * Splits a byte stream into length-prefixed frames: views into the chunks read, copies only of frames split by a read.
 * A split frame's chunks are kept as they came and joined once it is whole: memory follows the bytes received, not the
 * length a peer declares (a stranger's 4-byte prefix claiming 1 MiB reserves nothing).
 */
export const framer = (onFrame: (frame: Buffer, close: boolean) => void, onError: (error: TransportError) => void) => {
  // A frame split across reads: its chunks so far, their size, and the frame's whole size (prefix included) once known.
  let pending: Array<Buffer> = []
  let pendingBytes = 0
  let needed = 0
  const tooLarge = (length: number) =>
    new TransportError({ reason: "FrameTooLarge", message: `frame of ${length} bytes exceeds ${MAX_FRAME}` })
  /** The payload length a prefix declares, or the error it is. */
  const lengthOf = (prefix: number): number | TransportError => {
    const length = prefix & ~CLOSE_FLAG
    if (length === 0) return protocolError("empty frame")
    if (length > MAX_FRAME) return tooLarge(length)
    return length
  }
  return (input: Buffer) => {
    let chunk = input
    if (pendingBytes > 0) {
      pending.push(input)
      pendingBytes += input.byteLength
      if (needed === 0) {
        if (pendingBytes < 4) return
        // The prefix is whole now (it was split: at most four chunks to join).
        const joined = Buffer.concat(pending, pendingBytes)
        pending = [joined]
        const length = lengthOf(joined.readUInt32BE(0))
        if (typeof length !== "number") return onError(length)
        needed = 4 + length
      }
      if (pendingBytes < needed) return
      chunk = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes)
      pending = []
      pendingBytes = 0
      needed = 0
    }
    let offset = 0
    while (offset < chunk.byteLength) {
      const left = chunk.byteLength - offset
      if (left < 4) {
        pending = [chunk.subarray(offset)]
        pendingBytes = left
        return
      }
      const prefix = chunk.readUInt32BE(offset)
      const length = lengthOf(prefix)
      if (typeof length !== "number") return onError(length)
      if (left - 4 < length) {
        pending = [chunk.subarray(offset)]
        pendingBytes = left
        needed = 4 + length
        return
      }
      onFrame(chunk.subarray(offset + 4, offset + 4 + length), prefix >= CLOSE_FLAG)
      offset += 4 + length
    }
  }
}

const closeFrame = (code: number, reason: string): Buffer => {
  const text = Buffer.from(reason.slice(0, 120))
  const frame = Buffer.allocUnsafe(4 + 2 + text.byteLength)
  frame.writeUInt32BE((CLOSE_FLAG | (2 + text.byteLength)) >>> 0, 0)
  frame.writeUInt16BE(code, 4)
  text.copy(frame, 6)
  return frame
}

/** Wraps an open stream socket (after the upgrade; `head` is what was read past it) as a `tcp` `Connection`. */
export const wrap = (socket: Net.Socket | Duplex, codec: Codec, remoteAddress: string, head?: Buffer): Connection => {
  let handler: ConnectionHandler | undefined
  let early: Array<Message> | undefined = []
  let closeInfo: CloseInfo | undefined
  /** How this side closed it, or how the peer said it closed (its close frame); reported at the socket's close. */
  let ending: CloseInfo | undefined
  let closing = false
  let congested = false
  let received = 0

  // The frames of this turn: small ones wait to be copied into one buffer, with the callbacks of all of them.
  let corked = false
  let small: Array<Uint8Array> = []
  let smallBytes = 0
  let sent: Array<(() => void) | undefined> = []

  const onSent = () => {
    if (congested && socket.writableLength <= LOW_WATER_MARK) {
      congested = false
      handler?.drain?.()
    }
  }
  const flushSmall = () => {
    if (small.length === 0) return
    const out = Buffer.allocUnsafe(smallBytes)
    let offset = 0
    for (const frame of small) {
      out.writeUInt32BE(frame.byteLength, offset)
      out.set(frame, offset + 4)
      offset += 4 + frame.byteLength
      codec.recycle?.(frame)
    }
    const callbacks = sent
    small = []
    smallBytes = 0
    sent = []
    socket.write(out, () => {
      onSent()
      for (const callback of callbacks) callback?.()
    })
  }
  /** Frames that will never be written: their callbacks run now (the contract's "or the connection closed"). */
  const dropQueued = () => {
    const callbacks = sent
    small = []
    smallBytes = 0
    sent = []
    for (const callback of callbacks) callback?.()
  }
  const uncork = () => {
    flushSmall()
    corked = false
    ;(socket as Net.Socket).uncork()
  }
  const write = (frame: Uint8Array, written?: () => void) => {
    if (closing) return written?.()
    if (!corked) {
      corked = true
      ;(socket as Net.Socket).cork()
      process.nextTick(uncork)
    }
    if (frame.byteLength <= MAX_COPIED_FRAME) {
      small.push(frame)
      smallBytes += 4 + frame.byteLength
      sent.push(written)
    } else {
      flushSmall()
      const prefix = Buffer.allocUnsafe(4)
      prefix.writeUInt32BE(frame.byteLength, 0)
      socket.write(prefix)
      socket.write(frame, () => {
        onSent()
        codec.recycle?.(frame)
        written?.()
      })
    }
    if (!congested && socket.writableLength + smallBytes > HIGH_WATER_MARK) congested = true
  }

  const close = (code: number, reason: string) => {
    if (code === CLOSE_CODES.Timeout || code === CLOSE_CODES.SlowConsumer) {
      // The peer is silent or does not read: nothing more is written to it, and its socket is not waited for — also
      // when a close is already under way (a peer that sent its close frame and never its FIN is silent too).
      if (!closing) ending = { code, reason }
      closing = true
      dropQueued()
      socket.destroy()
      return
    }
    if (closing) return
    closing = true
    ending = { code, reason }
    flushSmall()
    socket.end(closeFrame(code, reason))
    setTimeout(() => socket.destroy(), Duration.toMillis(CLOSE_TIMEOUT)).unref()
  }
  const failed = (error: unknown) => {
    reportInternal(TRANSPORT, remoteAddress, error)
    close(CLOSE_CODES.Internal, "internal error")
  }
  const deliver = (message: Message) => {
    if (handler) deliverGuarded(handler.message, message, failed)
    else early?.push(message)
  }
  const onFrame = (frame: Buffer, isClose: boolean) => {
    if (closing) return
    received++
    if (isClose) {
      // The peer closed: its code is how the connection ended; our side ends too.
      const code = frame.byteLength >= 2 ? frame.readUInt16BE(0) : CLOSE_CODES.Protocol
      ending = { code, reason: frame.subarray(2, 122).toString("utf8") }
      closing = true
      socket.end()
      // Its FIN should follow; a peer that never sends it does not hold the socket (the hub's are half-open).
      setTimeout(() => socket.destroy(), Duration.toMillis(CLOSE_TIMEOUT)).unref()
      return
    }
    let message: Message
    try {
      message = codec.decode(frame)
    } catch (error) {
      return close(closeCodeOf(error), error instanceof TransportError ? error.message : "undecodable frame")
    }
    deliver(message)
  }
  const read = framer(onFrame, (error) => close(closeCodeOf(error), error.message))

  socket.on("data", (chunk: Buffer) => {
    if (!closing) read(chunk)
  })
  // A reset or a TLS failure is followed by "close"; the listener keeps it non-fatal.
  socket.on("error", () => {})
  socket.on("end", () => {
    if (!closing) {
      closing = true
      socket.end()
    }
  })
  socket.on("close", () => {
    closing = true
    dropQueued()
    closeInfo = ending ?? { code: 1006, reason: "" }
    handler?.close(closeInfo)
  })
  if (head && head.byteLength > 0) read(head)

  return {
    transport: TRANSPORT,
    remoteAddress,
    send: (message) => write(codec.encode(message) as Uint8Array),
    sendData: (stream, payload, written) => write(codec.encodeData(stream, payload) as Uint8Array, written),
    get bufferedAmount() {
      return socket.writableLength + smallBytes
    },
    get congested() {
      return congested
    },
    get received() {
      return received
    },
    get closed() {
      return closing
    },
    setHandler: (h) => {
      handler = h
      const queued = early ?? []
      early = undefined
      for (const message of queued) {
        if (closing) break
        deliverGuarded(h.message, message, failed)
      }
      if (closeInfo) h.close(closeInfo)
    },
    close
  }
}

/** True for an HTTP upgrade request asking for the `tcp` transport. */
export const isUpgrade = (request: Http.IncomingMessage): boolean =>
  (request.headers.upgrade ?? "").trim().toLowerCase() === UPGRADE

/** Takes over an upgrade request for the `tcp` transport: answers 101 and hands the connection to `accept`. */
export const acceptUpgrade = (
  socket: Duplex,
  head: Buffer,
  codec: Codec,
  remoteAddress: string,
  accept: (connection: Connection) => void
): void => {
  socket.on("error", () => {})
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${UPGRADE}\r\nConnection: Upgrade\r\n\r\n`)
  ;(socket as Net.Socket).setNoDelay?.(true)
  accept(wrap(socket, codec, remoteAddress, head))
}

/** Dials the hub at `url` (ws:// or wss://, as the WebSocket plugins) and upgrades to `tcp`; closed with the scope. */
export const dial = (codec: Codec) => (url: string, options: DialOptions = {}): Effect.Effect<Connection, TransportError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<Connection, TransportError>((resume) => {
      const target = new URL(url)
      const secure = target.protocol === "wss:" || target.protocol === "https:"
      const request = (secure ? Https : Http).request({
        host: target.hostname.replace(/^\[|\]$/g, ""),
        port: target.port === "" ? (secure ? 443 : 80) : Number(target.port),
        path: `${target.pathname}${target.search}`,
        headers: { Connection: "Upgrade", Upgrade: UPGRADE },
        timeout: 10_000,
        ...(options.ca === undefined ? {} : { ca: options.ca })
      })
      let done = false
      const fail = (message: string, cause?: unknown) => {
        if (done) return
        done = true
        request.destroy()
        resume(Effect.fail(new TransportError({ reason: "Open", message, ...(cause === undefined ? {} : { cause }) })))
      }
      request.once("error", (error) => fail(`cannot open ${url}: ${error.message}`, error))
      request.once("timeout", () => fail(`cannot open ${url}: no answer in 10 s`))
      request.once("response", (response) => {
        response.resume()
        fail(`hub answered HTTP ${response.statusCode} to ${url}`)
      })
      request.once("upgrade", (response, socket, head) => {
        if (done) return socket.destroy()
        done = true
        if ((response.headers.upgrade ?? "").toLowerCase() !== UPGRADE) {
          socket.destroy()
          return resume(Effect.fail(new TransportError({ reason: "Open", message: `hub does not speak ${UPGRADE}` })))
        }
        socket.setTimeout(0)
        socket.setNoDelay(true)
        resume(Effect.succeed(wrap(socket, codec, url, head)))
      })
      request.end()
      return Effect.sync(() => request.destroy())
    }),
    (connection) => Effect.sync(() => connection.close(CLOSE_CODES.Normal, "client closed"))
  )
