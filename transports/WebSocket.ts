/**
 * The WebSocket carrier shared by the `ws` and `msgpack` plugins: wraps a `ws` socket as a `Connection` with a
 * codec, dials a hub, and accepts several codecs on one HTTP server, dispatching on the WebSocket subprotocol — from
 * every upgrade of a server (`serve`) or from the upgrades a caller hands over (`upgrades`, e.g. one path of the hub).
 * An upgrade to the `tcp` plugin (TcpCarrier.ts) on the same path is handed to that carrier when msgpack is served.
 */
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import type * as Net from "node:net"
import type { Duplex } from "node:stream"
import { Duration, Effect } from "effect"
import type { Scope } from "effect"
import { WebSocket, WebSocketServer } from "ws"
import { MAX_FRAME } from "../core/Protocol.ts"
import type { Message } from "../core/Protocol.ts"
import { CLOSE_CODES, TransportError } from "../core/Transport.ts"
import type { CloseInfo, Codec, Connection, ConnectionHandler, DialOptions } from "../core/Transport.ts"
import { deliverGuarded, reportInternal } from "./Framing.ts"
import * as TcpCarrier from "./TcpCarrier.ts"

/** The subprotocol of the msgpack codec, whose frames the `tcp` plugin carries (Msgpack.ts imports this module). */
const MSGPACK_SUBPROTOCOL = "connect.msgpack.v1"

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

/** Time a closing connection waits for the peer's close frame before it cuts the TCP connection. */
export const CLOSE_TIMEOUT: Duration.DurationInput = "2 seconds"

const closeCodeOf = (error: unknown): number =>
  error instanceof TransportError && error.reason === "FrameTooLarge" ? CLOSE_CODES.FrameTooLarge : CLOSE_CODES.Protocol

// ws accepts only these codes in close(); anything else (e.g. 1006 reported for a vanished peer) is sent as 1000.
const sendable = (code: number): number =>
  code === 1000 || (code >= 1001 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) ||
    (code >= 3000 && code <= 4999)
    ? code
    : 1000

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

/** Wraps an open `ws` socket as a `Connection` speaking `codec`. */
export const wrap = (ws: WebSocket, codec: Codec, remoteAddress: string): Connection => {
  let handler: ConnectionHandler | undefined
  let early: Array<Message> | undefined = []
  let closeInfo: CloseInfo | undefined
  /** Set when this side cut the connection without a close handshake; reported instead of ws's 1006. */
  let localClose: CloseInfo | undefined
  let closing = false
  let congested = false
  let received = 0

  const onSent = () => {
    if (congested && ws.bufferedAmount <= LOW_WATER_MARK) {
      congested = false
      handler?.drain?.()
    }
  }
  const recycle = codec.recycle
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
    if (closing) return
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
  const close = (code: number, reason: string) => {
    if (closing) return
    closing = true
    if (code === CLOSE_CODES.Timeout || code === CLOSE_CODES.SlowConsumer) {
      // The peer is silent or does not read: waiting for its close frame would hold the connection, and the hub's
      // buffer towards it, for ws's 30 s.
      localClose = { code, reason }
      ws.terminate()
      return
    }
    // Frames sent before the close (the Error saying why) leave before the close frame: once ws has sent that, it
    // drops whatever it is handed.
    flush()
    ws.close(sendable(code), reason.slice(0, 120))
    // A peer that does not answer the close frame is cut after CLOSE_TIMEOUT instead of ws's 30 s.
    setTimeout(() => ws.terminate(), Duration.toMillis(CLOSE_TIMEOUT)).unref()
  }
  const failed = (error: unknown) => {
    reportInternal(codec.name, remoteAddress, error)
    close(CLOSE_CODES.Internal, "internal error")
  }
  const deliver = (message: Message) => {
    if (handler) deliverGuarded(handler.message, message, failed)
    else early?.push(message)
  }
  const unpack = codec.unbatch
  /** Decodes and delivers the frames of a batch in order; a bad one closes the connection (thrown to the caller). */
  const deliverAll = (parts: ReadonlyArray<Uint8Array>) => {
    for (const part of parts) {
      if (closing) return
      deliver(codec.decode(part))
    }
  }

  ws.on("message", (data: Buffer | ArrayBuffer | Array<Buffer>, isBinary: boolean) => {
    if (closing) return
    received++
    if (isBinary !== codec.binary) return close(CLOSE_CODES.Protocol, `expected ${codec.binary ? "binary" : "text"} frames`)
    const frame = Array.isArray(data) ? Buffer.concat(data) : data instanceof ArrayBuffer ? new Uint8Array(data) : data
    let message: Message
    try {
      const parts = unpack && typeof frame !== "string" ? unpack(frame) : undefined
      if (parts) return deliverAll(parts)
      message = codec.decode(frame)
    } catch (error) {
      return close(closeCodeOf(error), error instanceof TransportError ? error.message : "undecodable frame")
    }
    deliver(message)
  })
  // Errors (oversized frame, invalid UTF-8, reset socket) are followed by "close"; the listener keeps them non-fatal.
  ws.on("error", () => {})
  ws.on("close", (code: number, reason: Buffer) => {
    closing = true
    closeInfo = localClose ?? { code, reason: reason.toString() }
    handler?.close(closeInfo)
  })

  return {
    transport: codec.name,
    remoteAddress,
    send: (message) => write(codec.encode(message)),
    sendData: (stream, payload, written) => {
      if (closing) return written?.()
      const frame = codec.encodeData(stream, payload)
      if (!recycle && !written) return write(frame)
      write(frame, () => {
        onSent()
        if (recycle) recycle(frame as Uint8Array)
        written?.()
      })
    },
    get bufferedAmount() {
      return ws.bufferedAmount + queuedBytes
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
    enableBatching: () => {
      if (pack && codec.unbatch) batching = true
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

const zeroMask = (mask: Uint8Array) => {
  mask.fill(0)
}

/** Dials `url` with the codec's subprotocol; the connection is closed when the scope closes. */
export const dial = (codec: Codec) => (url: string, options: DialOptions = {}): Effect.Effect<Connection, TransportError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<Connection, TransportError>((resume) => {
      const ws = new WebSocket(url, [codec.subprotocol], {
        // Compression costs 10–40× on binary payloads and would hide the stream windows behind a zlib buffer.
        perMessageDeflate: false,
        maxPayload: MAX_FRAME,
        handshakeTimeout: 10_000,
        // Client frames must carry a mask key, but masking only shields browser-facing proxies from scripted
        // payloads; an all-zero key makes ws skip the XOR pass (and its in-place write over our payload) entirely.
        generateMask: zeroMask,
        // Verified always (ws's default); a private CA is added, never a check removed.
        ...(options.ca === undefined ? {} : { ca: options.ca })
      })
      const fail = (message: string, cause?: unknown) => {
        ws.removeAllListeners()
        ws.on("error", () => {})
        ws.terminate()
        resume(Effect.fail(new TransportError({ reason: "Open", message, ...(cause === undefined ? {} : { cause }) })))
      }
      ws.once("error", (error) => fail(`cannot open ${url}: ${error.message}`, error))
      ws.once("unexpected-response", (_req, res) => fail(`hub answered HTTP ${res.statusCode} to ${url}`))
      ws.once("open", () => {
        ws.removeAllListeners()
        if (ws.protocol !== codec.subprotocol) return fail(`hub does not speak ${codec.subprotocol}`)
        resume(Effect.succeed(wrap(ws, codec, url)))
      })
      return Effect.sync(() => ws.terminate())
    }),
    (connection) => Effect.sync(() => connection.close(CLOSE_CODES.Normal, "client closed"))
  )

/** Options of `upgrades`. */
export interface UpgradeOptions {
  /** Codecs to accept, dispatched on the WebSocket subprotocol the client asks for. */
  readonly codecs: ReadonlyArray<Codec>
  /** The peer address an upgrade request is recorded under (default the socket's `ip:port`), e.g. behind a proxy. */
  readonly remoteAddress?: (req: Http.IncomingMessage) => string
}

/** Takes over an HTTP upgrade request and its socket (the arguments of an `http.Server`'s "upgrade" event). */
export type UpgradeHandler = (request: Http.IncomingMessage, socket: Duplex, head: Buffer) => void

/** WebSocket connections accepted from the upgrade requests handed to `handle`. */
export interface Upgrades {
  /** Accepts an upgrade for the first codec whose subprotocol the client asks for; with none, answers 400. */
  readonly handle: UpgradeHandler
  /** Cuts every accepted connection that is still open, without waiting for a close handshake. */
  readonly terminate: () => void
}

/**
 * Accepts WebSocket connections for every codec from the upgrade requests given to `handle` (by an `http.Server`'s
 * "upgrade" event, or a dispatcher in front of it); each is passed to `accept`. Closing the scope closes every
 * accepted connection (1001).
 */
export const upgrades = (
  options: UpgradeOptions,
  accept: (connection: Connection) => void
): Effect.Effect<Upgrades, never, Scope.Scope> =>
  Effect.gen(function*() {
    const bySubprotocol = new Map(options.codecs.map((c) => [c.subprotocol, c]))
    const live = new Set<WebSocket>()
    const wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      maxPayload: MAX_FRAME,
      clientTracking: false,
      handleProtocols: (protocols) => [...protocols].find((p) => bySubprotocol.has(p)) ?? false
    })
    const rawLive = new Set<{ readonly connection: Connection; readonly socket: Duplex }>()
    const addressOf = (req: Http.IncomingMessage) =>
      options.remoteAddress?.(req) ?? `${req.socket.remoteAddress ?? "unknown"}:${req.socket.remotePort ?? 0}`
    const handle: UpgradeHandler = (req, socket, head) => {
      // The `tcp` plugin starts as an upgrade of its own on the same path, speaking the msgpack codec's frames.
      const msgpack = bySubprotocol.get(MSGPACK_SUBPROTOCOL)
      if (TcpCarrier.isUpgrade(req) && msgpack) {
        return TcpCarrier.acceptUpgrade(socket, head, msgpack, addressOf(req), (connection) => {
          const entry = { connection, socket }
          rawLive.add(entry)
          socket.once("close", () => rawLive.delete(entry))
          accept(connection)
        })
      }
      const asked = (req.headers["sec-websocket-protocol"] ?? "").split(",").map((p) => p.trim())
      const codec = asked.map((p) => bySubprotocol.get(p)).find((c) => c !== undefined)
      socket.on("error", () => {})
      if (!codec) {
        socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        return
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        live.add(ws)
        ws.once("close", () => live.delete(ws))
        accept(wrap(ws, codec, addressOf(req)))
      })
    }
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const ws of live) ws.close(CLOSE_CODES.GoingAway, "hub shutting down")
        for (const { connection } of rawLive) connection.close(CLOSE_CODES.GoingAway, "hub shutting down")
      })
    )
    return {
      handle,
      terminate: () => {
        for (const ws of live) ws.terminate()
        for (const { socket } of rawLive) socket.destroy()
      }
    }
  })

/** Options of `serve`. */
export interface ServeOptions extends UpgradeOptions {
  /** An existing HTTP server to attach to (its lifecycle stays with the caller); else one is created. */
  readonly server?: Http.Server
  /** Host to listen on when a server is created (default 127.0.0.1). */
  readonly host?: string
  /** Port to listen on when a server is created (default 0: a free port). */
  readonly port?: number
}

/** A running WebSocket endpoint. */
export interface Served {
  /** The port the server listens on. */
  readonly port: number
  /** `ws://host:port` of the server. */
  readonly url: string
}

/**
 * Accepts WebSocket connections for every codec on one HTTP server (every upgrade it receives); each is passed to
 * `accept`. Closing the scope closes every accepted connection (1001) and, if it created the server, the server.
 */
export const serve = (
  options: ServeOptions,
  accept: (connection: Connection) => void
): Effect.Effect<Served, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const owned = options.server === undefined
    const server = options.server ?? Http.createServer({ noDelay: true }, (_req, res) => {
      res.writeHead(426, { "content-type": "text/plain" }).end("WebSocket upgrade required\n")
    })
    // Finalizers run in reverse: the server stops taking upgrades, then the connections are closed (by `upgrades`),
    // then a server of our own closes.
    if (owned) {
      yield* Effect.addFinalizer(() =>
        Effect.async<void>((resume) => {
          // Give peers a moment to answer the close frames, then cut whatever is left.
          const timer = setTimeout(() => {
            accepted.terminate()
            server.closeAllConnections()
          }, 500)
          server.close(() => {
            clearTimeout(timer)
            resume(Effect.void)
          })
        })
      )
    }
    const accepted: Upgrades = yield* upgrades(options, accept)
    server.on("upgrade", accepted.handle)
    yield* Effect.addFinalizer(() => Effect.sync(() => server.off("upgrade", accepted.handle)))
    if (owned) {
      yield* Effect.async<void, TransportError>((resume) => {
        server.once("error", (error) =>
          resume(Effect.fail(new TransportError({ reason: "Open", message: error.message, cause: error }))))
        server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => resume(Effect.void))
      })
    }
    const address = server.address() as AddressInfo
    const host = address.family === "IPv6" ? `[${address.address}]` : address.address
    return { port: address.port, url: `ws://${host}:${address.port}` }
  })
