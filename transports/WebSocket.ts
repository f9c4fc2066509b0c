/**
 * The WebSocket carrier shared by the `ws` and `msgpack` plugins: wraps a `ws` socket as a `Connection` with a
 * codec, dials a hub, and accepts several codecs on one HTTP server, dispatching on the WebSocket subprotocol — from
 * every upgrade of a server (`serve`) or from the upgrades a caller hands over (`upgrades`, e.g. one path of the hub).
 * An upgrade to the `tcp` plugin (TcpCarrier.ts) on the same path is handed to that carrier when msgpack is served.
 */
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
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
import * as WsWriter from "./WsWriter.ts"

/** The subprotocol of the msgpack codec, whose frames the `tcp` plugin carries (Msgpack.ts imports this module). */
const MSGPACK_SUBPROTOCOL = "connect.msgpack.v1"

export { HIGH_WATER_MARK, LOW_WATER_MARK, MAX_BATCHED_FRAME } from "./WsWriter.ts"

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

/** Wraps an open `ws` socket as a `Connection` speaking `codec`. */
export const wrap = (ws: WebSocket, codec: Codec, remoteAddress: string): Connection => {
  let handler: ConnectionHandler | undefined
  let early: Array<Message> | undefined = []
  let closeInfo: CloseInfo | undefined
  /** Set when this side cut the connection without a close handshake; reported instead of ws's 1006. */
  let localClose: CloseInfo | undefined
  let closing = false
  let received = 0

  const recycle = codec.recycle
  const writer = WsWriter.make(ws, codec, () => handler?.drain?.())
  const { flush, onSent } = writer
  const write = (frame: Uint8Array | string, sent?: (error?: Error | null) => void) => {
    if (!closing) writer.write(frame, sent)
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
      return ws.bufferedAmount + writer.queuedBytes()
    },
    get congested() {
      return writer.congested()
    },
    get received() {
      return received
    },
    get closed() {
      return closing
    },
    enableBatching: writer.enableBatching,
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
