/**
 * Forwarding one checked public-link request to the link's service over a relay stream: node's HTTP client on a pooled
 * connection (LinkPool.ts), the normalised path and the query, the end-to-end headers plus `X-Forwarded-*`, the body
 * streamed through unchanged with backpressure both ways, the answer streamed back with its status, headers and
 * trailers. A request is sent once and never retried (a POST must not run twice). An upgrade (WebSocket) gets a
 * connection of its own and, once the service answers 101, the two sockets are joined. Each request is recorded once
 * it is done (LinkRecorder.ts); a failure before the answer is 502 (target offline or unreachable) or 503 (its tunnel
 * could not be recorded: fail closed).
 */
import * as Http from "node:http"
import type * as Net from "node:net"
import type { Duplex } from "node:stream"
import type { LinkDeniedReason } from "../../core/Events.ts"
import type * as LinkIdle from "./LinkIdle.ts"
import type { Checked } from "./LinkProxy.ts"
import type * as LinkPool from "./LinkPool.ts"
import type * as LinkRecorder from "./LinkRecorder.ts"
import * as LinkTarget from "./LinkTarget.ts"

/** What forwarding uses. */
export interface ForwardDeps {
  readonly pools: LinkPool.Pools
  readonly recorder: LinkRecorder.LinkRecorder
  readonly proto: "http" | "https"
  /** No byte either way for this long ends an exchange (the limits' `linkIdleTimeout`, else `IDLE_TIMEOUT_MS`). */
  readonly idleMs: number
  /** The watch that ends plain requests after `idleMs` without a byte (upgrades time their own connection). */
  readonly idle: LinkIdle.IdleWatch
}

/**
 * No byte either way for this long ends an upstream exchange (60 s): a service that stalls mid-answer, or a client
 * that stops sending its body, does not hold the pooled connection and the other side forever, while a slow but
 * moving download or upload is never cut, however long it lasts.
 */
export const IDLE_TIMEOUT_MS = 60_000

/** What a failure before the service answered means for the client: 503 when the tunnel could not be recorded. */
const failureOf = (error: NodeJS.ErrnoException): {
  readonly status: number
  readonly code: string
  readonly message: string
  readonly reason: typeof LinkDeniedReason.Type
} => {
  switch (error.code) {
    case "Unavailable":
      return { status: 503, code: "Unavailable", message: "the hub cannot record this request right now; try again", reason: "log_unavailable" }
    case "AgentOffline":
    case "AgentDisconnected":
    case "ServiceNotFound":
    case "HubDisconnected":
      return { status: 502, code: "AgentOffline", message: "the service behind this link is offline", reason: "agent_offline" }
    default:
      return { status: 502, code: "BadGateway", message: "the service behind this link did not answer", reason: "upstream_error" }
  }
}

/** Methods a request may be sent again for when its reused connection turned out closed (and it had no body). */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS"])

/** Whether the request's framing says a body follows (RFC 9112 §6.3: Transfer-Encoding, or a Content-Length above 0). */
const hasBody = (incoming: Http.IncomingMessage): boolean => {
  const length = incoming.headers["content-length"]
  return incoming.headers["transfer-encoding"] !== undefined || (length !== undefined && length !== "0")
}

const pathOf = (checked: Checked) => checked.query === undefined ? checked.path : `${checked.path}?${checked.query}`

/** Forwards a plain request and streams the answer back. */
export const request = (
  deps: ForwardDeps,
  checked: Checked,
  incoming: Http.IncomingMessage,
  response: Http.ServerResponse,
  started: number
) => {
  const pool = deps.pools.get({
    linkId: checked.link.id,
    workspaceId: checked.link.workspace_id,
    service: checked.link.service_name ?? ""
  })
  let bytesUp = 0
  let bytesDown = 0
  let status = 0
  let done = false
  let upstream: Http.ClientRequest
  // No byte either way for `idleMs` ends the exchange: a service that stalls, a body that stops coming.
  const watched = deps.idle.watch(() => upstream.destroy(Object.assign(new Error("idle"), { code: "ETIMEDOUT" })))
  const finish = (failure?: ReturnType<typeof failureOf>) => {
    if (done) return
    done = true
    watched.stop()
    const access = {
      link: checked.ref,
      ip: checked.ip,
      userAgent: incoming.headers["user-agent"],
      method: incoming.method ?? "",
      path: checked.path,
      status: failure?.status ?? (status || 499),
      bytesUp,
      bytesDown,
      durationMs: Date.now() - started
    }
    if (failure) deps.recorder.denied(access, failure.reason)
    else deps.recorder.allowed(access)
  }
  const send = (retried: boolean) => {
    upstream = Http.request({
      agent: pool.agent,
      method: incoming.method,
      path: pathOf(checked),
      headers: LinkTarget.flatten(LinkTarget.forwardHeaders(incoming, { ip: checked.ip, proto: deps.proto }, false, checked.hubOrigin)),
      setHost: false
    })
    const sent = upstream
    sent.on("error", (error: NodeJS.ErrnoException) => {
      incoming.unpipe(sent)
      // A kept-alive connection the service closed as it was reused: a request without a body that changes nothing
      // (GET, HEAD, OPTIONS) is sent once more on a fresh connection; anything else (a POST) never is.
      if (!retried && sent.reusedSocket && bytesUp === 0 && IDEMPOTENT.has(incoming.method ?? "") && !response.headersSent) {
        return send(true)
      }
      if (!response.headersSent) {
        const failure = failureOf(error)
        status = failure.status
        finish(failure)
        response.writeHead(failure.status, { "content-type": "application/json", connection: "close" })
        response.end(JSON.stringify({ error: { code: failure.code, message: failure.message } }))
      } else {
        // The answer had begun: the client sees its connection cut, as it would from the service itself.
        finish()
        response.destroy()
      }
    })
    sent.on("response", (answer) => {
      status = answer.statusCode ?? 502
      const headers = LinkTarget.answerHeaders(answer.rawHeaders, checked.hubOrigin)
      // The service's reason phrase is not passed on: node's parser lets through characters that `writeHead` refuses
      // (a control character threw out of this callback and ended the hub). Each status gets its standard phrase, and
      // a header node will not write back is a 502, never an exception.
      try {
        // A status no HTTP answer has (node's parser reads any three digits) is malformed too, and could not be recorded.
        if (status < 100 || status > 599) throw new RangeError(`status ${status}`)
        response.writeHead(status, LinkTarget.flatten(headers))
      } catch {
        status = 502
        answer.destroy()
        sent.destroy()
        finish({ status: 502, code: "BadGateway", message: "the service behind this link answered with a malformed header", reason: "upstream_error" })
        response.writeHead(502, { "content-type": "application/json", connection: "close" })
        response.end(JSON.stringify({ error: { code: "BadGateway", message: "the service behind this link answered with a malformed header" } }))
        return
      }
      answer.on("data", (chunk: Buffer) => {
        bytesDown += chunk.length
        watched.touch()
        if (!response.write(chunk)) {
          answer.pause()
          response.once("drain", () => answer.resume())
        }
      })
      answer.on("end", () => {
        try {
          if (answer.rawTrailers.length > 0) response.addTrailers(LinkTarget.endToEnd(answer.rawTrailers))
        } catch {
          // A trailer node will not write: dropped, the answer itself is whole.
        }
        response.end()
      })
      answer.on("error", () => response.destroy())
    })
    // A request framed without a body (no Content-Length above 0, no Transfer-Encoding: most GETs) ends at once,
    // without a pipe set up to carry nothing.
    if (incoming.readableEnded || !hasBody(incoming)) sent.end()
    else incoming.pipe(sent)
  }
  response.on("close", () => {
    finish()
    // The client went away before the answer was whole: the exchange is dropped, and its connection with it.
    if (!response.writableFinished) upstream.destroy()
  })
  incoming.on("data", (chunk: Buffer) => {
    bytesUp += chunk.length
    watched.touch()
  })
  send(false)
}

/** Forwards an upgrade request on a connection of its own; once the service answers 101 the sockets are joined. */
export const upgrade = (
  deps: ForwardDeps,
  checked: Checked,
  incoming: Http.IncomingMessage,
  socket: Duplex,
  head: Buffer,
  started: number
) => {
  const pool = deps.pools.get({
    linkId: checked.link.id,
    workspaceId: checked.link.workspace_id,
    service: checked.link.service_name ?? ""
  })
  let bytesUp = head.length
  let bytesDown = 0
  let status = 0
  let recorded = false
  const record = (failure?: ReturnType<typeof failureOf>) => {
    if (recorded) return
    recorded = true
    const access = {
      link: checked.ref,
      ip: checked.ip,
      userAgent: incoming.headers["user-agent"],
      method: incoming.method ?? "",
      path: checked.path,
      status: failure?.status ?? (status || 499),
      bytesUp,
      bytesDown,
      durationMs: Date.now() - started
    }
    if (failure) deps.recorder.denied(access, failure.reason)
    else deps.recorder.allowed(access)
  }
  const upstream = Http.request({
    createConnection: pool.open,
    method: incoming.method,
    path: pathOf(checked),
    headers: LinkTarget.flatten(LinkTarget.forwardHeaders(incoming, { ip: checked.ip, proto: deps.proto }, true, checked.hubOrigin)),
    setHost: false
  } as Http.RequestOptions)
  upstream.on("error", (error: NodeJS.ErrnoException) => {
    const failure = failureOf(error)
    status = failure.status
    record(failure)
    socket.end(
      `HTTP/1.1 ${failure.status} ${Http.STATUS_CODES[failure.status]}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n` +
        JSON.stringify({ error: { code: failure.code, message: failure.message } })
    )
  })
  // No byte either way for `idleMs` ends the exchange, as for plain requests.
  upstream.setTimeout(deps.idleMs, () => upstream.destroy(Object.assign(new Error("idle"), { code: "ETIMEDOUT" })))
  upstream.on("response", (answer) => {
    // Not upgraded: the answer goes back as it is, and the connection ends with it. It is piped, so that a client
    // that asks for an upgrade of a large resource and never reads holds the service back, not the hub's memory.
    status = answer.statusCode ?? 502
    const lines = [`HTTP/1.1 ${status} ${Http.STATUS_CODES[status] ?? "Unknown"}`]
    for (const [n, v] of LinkTarget.answerHeaders(answer.rawHeaders, checked.hubOrigin)) lines.push(`${n}: ${v}`)
    socket.write(lines.join("\r\n") + "\r\nConnection: close\r\n\r\n")
    answer.on("data", (chunk: Buffer) => void (bytesDown += chunk.length))
    answer.pipe(socket)
    answer.on("end", () => record())
    socket.on("close", () => {
      record()
      upstream.destroy()
    })
  })
  upstream.on("upgrade", (answer, service: Net.Socket, serviceHead: Buffer) => {
    status = answer.statusCode ?? 101
    const lines = [`HTTP/1.1 ${status} Switching Protocols`]
    for (let i = 0; i < answer.rawHeaders.length; i += 2) lines.push(`${answer.rawHeaders[i]}: ${answer.rawHeaders[i + 1]}`)
    socket.write(lines.join("\r\n") + "\r\n\r\n")
    if (serviceHead.length > 0) {
      bytesDown += serviceHead.length
      socket.write(serviceHead)
    }
    if (head.length > 0) service.write(head)
    service.on("data", (chunk: Buffer) => void (bytesDown += chunk.length))
    socket.on("data", (chunk: Buffer) => void (bytesUp += chunk.length))
    service.pipe(socket)
    socket.pipe(service)
    const end = () => {
      record()
      service.destroy()
      socket.destroy()
    }
    service.on("close", end)
    socket.on("close", end)
    service.on("error", () => {})
  })
  upstream.end()
}
