/**
 * The edge of the hub's HTTP port, before any route runs: server timeouts, the TLS suites, a per-address connection
 * cap, JSON answers to requests node's parser refuses (431, 408, 400), the deadline of every request but public
 * links, and a body reader that stops at a size limit without cutting the connection (so the client still gets its
 * 413).
 */
import * as Http from "node:http"
import type * as Https from "node:https"
import type * as Net from "node:net"
import type { Duplex } from "node:stream"
import * as HttpApp from "@effect/platform/HttpApp"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { BadRequest, BodyTooLarge, describeIssues } from "../../core/HubApi.ts"
import * as ClientAddress from "./ClientAddress.ts"
import type { HttpLimits, TlsFiles } from "../HubConfig.ts"

/**
 * Node server options for `limits`: headers must arrive within the timeout, checked often enough to honour it. Node's
 * own `requestTimeout` (300 s by default, for the whole port) is off: it cut a public link's upload of a large file
 * after five minutes however fast its bytes still came. The deadline of a whole request is `requestDeadline`'s, for
 * every request but the ones a route exempts (links, whose idle timeout is their own: LinkForward.ts).
 */
export const serverOptions = (limits: HttpLimits): Http.ServerOptions => {
  const headersTimeout = Duration.toMillis(limits.headersTimeout)
  return {
    headersTimeout,
    requestTimeout: 0,
    // Node checks the timeouts on this interval (default 30 s, which would let a slowloris client live 40 s).
    connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(headersTimeout / 4)))
  }
}

/**
 * Mozilla's "intermediate" TLS 1.2 suites without the DHE ones: ECDHE key exchange (forward secrecy) with AEAD
 * ciphers only, so no CBC, SHA-1 MAC or RSA key exchange; TLS 1.3 keeps its (all AEAD) defaults.
 */
export const TLS_CIPHERS = [
  "TLS_AES_128_GCM_SHA256",
  "TLS_AES_256_GCM_SHA384",
  "TLS_CHACHA20_POLY1305_SHA256",
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-RSA-AES128-GCM-SHA256",
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
  "ECDHE-RSA-CHACHA20-POLY1305"
].join(":")

/** HTTPS server options: the certificate, TLS 1.2 or later with `TLS_CIPHERS`, and the handshake within the headers timeout. */
export const tlsOptions = (tls: TlsFiles, limits: HttpLimits): Https.ServerOptions => ({
  cert: tls.cert,
  key: tls.key,
  minVersion: "TLSv1.2",
  ciphers: TLS_CIPHERS,
  // Mozilla intermediate: every suite offered is strong, so the client may pick the one its hardware does fastest.
  honorCipherOrder: false,
  handshakeTimeout: Duration.toMillis(limits.headersTimeout)
})

const STATUS_CODES: Record<string, readonly [number, string, string]> = {
  HPE_HEADER_OVERFLOW: [431, "HeadersTooLarge", "the request's headers are too large"],
  ERR_HTTP_REQUEST_TIMEOUT: [408, "RequestTimeout", "the request's headers did not arrive in time"],
  HPE_CHUNK_EXTENSIONS_OVERFLOW: [413, "BodyTooLarge", "the request's chunk extensions are too large"]
}

/** A whole HTTP/1.1 error response with the API's JSON error body, closing the connection. */
export const rawErrorResponse = (status: number, code: string, message: string): string => {
  const body = JSON.stringify({ error: { code, message } })
  return `HTTP/1.1 ${status} ${Http.STATUS_CODES[status] ?? ""}\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`
}

/** Answers what node's parser refuses (431 headers too large, 408 headers timeout, else 400) as JSON, then closes. */
const answerClientError = (error: NodeJS.ErrnoException, socket: Duplex) => {
  const net = socket as Net.Socket
  if (error.code === "ECONNRESET" || !socket.writable || net.bytesWritten > 0) return socket.destroy()
  const [status, code, message] = STATUS_CODES[error.code ?? ""] ?? [400, "BadRequest", "malformed HTTP request"]
  socket.end(rawErrorResponse(status, code, message))
  // A client that does not read its answer must not keep the socket.
  setTimeout(() => socket.destroy(), 1_000).unref()
}

/**
 * Caps open connections per client address: the `limit + 1`-th concurrent connection from one address is destroyed
 * on accept. A trusted proxy's connections carry many clients and are not capped here.
 */
const capConnections = (server: Http.Server, limit: number, trusted: ClientAddress.TrustedProxies) => {
  const open = new Map<string, number>()
  // "connection" fires for the TCP socket, before any byte is read (and before a TLS handshake starts).
  server.on("connection", (socket: Net.Socket) => {
    const normalized = ClientAddress.normalize(socket.remoteAddress ?? "unknown")
    if (trusted.contains(normalized)) return
    const address = ClientAddress.limitKey(normalized)
    const count = (open.get(address) ?? 0) + 1
    if (count > limit) return socket.destroy()
    open.set(address, count)
    socket.once("close", () => {
      const left = (open.get(address) ?? 1) - 1
      if (left === 0) open.delete(address)
      else open.set(address, left)
    })
  })
}

/** Cuts a request whose body has not arrived `ms` after its headers (a slow-body client), unless `exempt`. */
const requestDeadline = (server: Http.Server, ms: number, exempt: (request: Http.IncomingMessage) => boolean) => {
  server.on("request", (request: Http.IncomingMessage) => {
    if (request.complete || exempt(request)) return
    // Only a body still missing at the deadline is cut: a request that arrived whole (a GET has no body) is its
    // handler's to answer, however long that takes (a live tail's long poll waits up to 25 s).
    const timer = setTimeout(() => {
      if (!request.complete) request.socket.destroy()
    }, ms)
    const clear = () => clearTimeout(timer)
    request.once("end", clear)
    request.once("close", clear)
  })
}

/**
 * Cuts a connection whose first request's headers have not arrived `ms` after it was accepted (after its TLS handshake,
 * which has its own timeout). Node's headers timeout starts only at a request's first byte, so a client that connects
 * and sends nothing would otherwise stay forever; later requests on a kept-alive connection are node's to time.
 */
const firstRequestDeadline = (server: Http.Server, ms: number, tls: boolean) => {
  const started = new WeakSet<Duplex>()
  const mark = (request: Http.IncomingMessage) => void started.add(request.socket)
  server.on("request", mark)
  server.on("upgrade", mark)
  server.on(tls ? "secureConnection" : "connection", (socket: Net.Socket) => {
    const timer = setTimeout(() => {
      if (started.has(socket)) return
      answerClientError(Object.assign(new Error("headers timeout"), { code: "ERR_HTTP_REQUEST_TIMEOUT" }), socket)
    }, ms).unref()
    socket.once("close", () => clearTimeout(timer))
  })
}

/**
 * Puts the connection cap, the JSON answers to parser errors and the request deadlines on `server`; requests `exempt`
 * names (public links) have no whole-request deadline.
 */
export const guard = (
  server: Http.Server,
  limits: HttpLimits,
  trusted: ClientAddress.TrustedProxies,
  tls: boolean,
  exempt: (request: Http.IncomingMessage) => boolean = () => false
): void => {
  track(server)
  capConnections(server, limits.maxConnectionsPerAddress, trusted)
  firstRequestDeadline(server, Duration.toMillis(limits.headersTimeout), tls)
  server.on("clientError", answerClientError)
  requestDeadline(server, Duration.toMillis(limits.requestTimeout), exempt)
}

/** Every socket of a guarded server, from before it listens, and whether it is shutting down. */
const connections = new WeakMap<Http.Server, { readonly sockets: Set<Net.Socket>; closing: boolean }>()

const track = (server: Http.Server) => {
  const state = { sockets: new Set<Net.Socket>(), closing: false }
  connections.set(server, state)
  server.on("connection", (socket: Net.Socket) => {
    // Until server.close() runs the server still accepts: an agent reconnecting at once must not hold shutdown up.
    if (state.closing) return socket.destroy()
    state.sockets.add(socket)
    socket.once("close", () => state.sockets.delete(socket))
  })
}

/**
 * Starts the shutdown of a guarded server's connections: new ones are cut at once, idle keep-alive ones now, and
 * whatever is still open `graceMs` later (requests in flight, WebSockets nobody closed) is destroyed. server.close()
 * waits for every connection, upgraded ones included, so without this one open socket could hold shutdown forever.
 */
export const shutdown = (server: Http.Server, graceMs: number): void => {
  const state = connections.get(server)
  server.closeIdleConnections()
  if (!state) return
  state.closing = true
  setTimeout(() => {
    for (const socket of state.sockets) socket.destroy()
  }, graceMs).unref()
}

/** A request body that could not be read: larger than allowed, or the client went away. */
export class BodyError extends Schema.TaggedError<BodyError>()("BodyError", {
  reason: Schema.Literal("TooLarge", "Read"),
  message: Schema.String
}) {}

/**
 * The body of `request` as UTF-8, failing with `TooLarge` as soon as it passes `max` bytes. The rest is left unread
 * rather than destroyed (which would cut the socket before the 413 is sent); answer with `Connection: close`.
 */
export const readText = (request: Http.IncomingMessage, max: number): Effect.Effect<string, BodyError> =>
  Effect.async<string, BodyError>((resume) => {
    const chunks: Array<Buffer> = []
    let bytes = 0
    const stop = () => {
      request.off("data", onData).off("end", onEnd).off("error", onError)
      request.pause()
    }
    const onData = (chunk: Buffer) => {
      bytes += chunk.length
      if (bytes <= max) return void chunks.push(chunk)
      stop()
      resume(new BodyError({ reason: "TooLarge", message: `the request body is larger than ${max} bytes` }))
    }
    const onEnd = () => {
      stop()
      resume(Effect.succeed(Buffer.concat(chunks).toString("utf8")))
    }
    const onError = (error: Error) => {
      stop()
      resume(new BodyError({ reason: "Read", message: error.message }))
    }
    if (request.readableEnded) return resume(new BodyError({ reason: "Read", message: "the body was already read" }))
    request.on("data", onData).on("end", onEnd).on("error", onError)
    return Effect.sync(stop)
  })

/**
 * The request's body as JSON decoded with `schema`, read within `max` bytes: a larger Content-Length is refused
 * unread, a chunked body as it passes the limit (413; the answer closes the connection); a body
 * that is not a JSON object, or breaks `schema`, is 400. An empty body is `{}`. Endpoints with a body are served with
 * `handleRaw` and read it with this: the platform's own reader would cut the connection at its limit instead of
 * answering 413, and answers malformed JSON with a 500.
 */
export const jsonBody = <A, I>(
  schema: Schema.Schema<A, I>,
  max: number
): Effect.Effect<A, BadRequest | BodyTooLarge, HttpServerRequest.HttpServerRequest> =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    // The rest of the body stays unread: the answer closes the connection instead of node reading it to the end.
    const tooLarge = Effect.zipRight(
      HttpApp.appendPreResponseHandler((_, response) =>
        Effect.succeed(HttpServerResponse.setHeader(response, "connection", "close"))
      ),
      Effect.fail(new BodyTooLarge({ message: `the request body is larger than ${max} bytes` }))
    )
    if (Number(request.headers["content-length"] ?? 0) > max) return yield* tooLarge
    const text = yield* readText(NodeHttpServerRequest.toIncomingMessage(request), max).pipe(
      Effect.catchTag("BodyError", (e): Effect.Effect<never, BadRequest | BodyTooLarge> =>
        e.reason === "TooLarge" ? tooLarge : Effect.fail(new BadRequest({ message: "unreadable request body" })))
    )
    const parsed = text.trim() === "" ? {} : yield* Effect.try({
      try: () => JSON.parse(text) as unknown,
      catch: () => new BadRequest({ message: "the body is not JSON" })
    })
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      return yield* new BadRequest({ message: "the body must be a JSON object" })
    }
    return yield* Schema.decodeUnknown(schema)(parsed).pipe(
      Effect.mapError((error) => new BadRequest({ message: describeIssues(error) }))
    )
  })
