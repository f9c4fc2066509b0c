/**
 * One connection of a syslog sink: opening it (TCP, or TLS with the server's certificate verified), writing framed
 * records with backpressure, and closing it so that the server's own close confirms it read everything.
 */
import { Duration, Effect } from "effect"
import * as Net from "node:net"
import * as Tls from "node:tls"
import { SinkError } from "./Sink.ts"

/** Where a syslog sink connects. */
export interface SyslogTarget {
  readonly protocol: "tcp" | "tls"
  readonly host: string
  readonly port: number
  /** The target as the user wrote it. */
  readonly url: string
}

/** An error of the sink for `target`, its message prefixed with the target. */
export const sinkError = (target: SyslogTarget, reason: SinkError["reason"], message: string, cause?: unknown) =>
  new SinkError({ reason, target: target.url, message: `syslog ${target.url}: ${message}`, cause })

// Node's codes for a certificate the client refuses: retrying cannot help.
const isTlsVerification = (error: NodeJS.ErrnoException) =>
  typeof error.code === "string" && (/CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ERR_TLS|ERR_SSL/.test(error.code))

const hints: Record<string, string> = {
  ECONNREFUSED: "connection refused: is the server running and listening on that port?",
  ENOTFOUND: "unknown host",
  EAI_AGAIN: "host name lookup failed",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  ECONNRESET: "connection reset by the server",
  EPIPE: "the server closed the connection"
}

/** A socket error as a user reads it: what it means, then its code. */
export const describeError = (error: NodeJS.ErrnoException) =>
  (error.code !== undefined && hints[error.code] !== undefined ? `${hints[error.code]} (${error.code})` : error.message)

/** An open connection to a syslog server. */
export interface Connection {
  readonly socket: Net.Socket
  /** Why the connection is no longer usable, once it is not. */
  broken: SinkError | undefined
  /** Whether the server closed its side: it reads no more, so what it had not read is lost. */
  serverClosed: boolean
}

/** Connects (and for TLS completes the handshake) within `timeout`; a certificate the client refuses is `Tls`. */
export const open = (
  target: SyslogTarget,
  tls: Tls.ConnectionOptions | undefined,
  timeout: Duration.DurationInput
): Effect.Effect<Connection, SinkError> =>
  Effect.async<Connection, SinkError>((resume) => {
    const socket = target.protocol === "tcp"
      ? Net.connect({ host: target.host, port: target.port })
      : Tls.connect({
        host: target.host,
        port: target.port,
        ...(Net.isIP(target.host) === 0 ? { servername: target.host } : {}),
        ...tls
      })
    const onError = (e: NodeJS.ErrnoException) => {
      socket.destroy()
      resume(
        Effect.fail(
          isTlsVerification(e)
            ? sinkError(target, "Tls", `TLS handshake failed: ${e.message} (${e.code})`, e)
            : sinkError(target, "Connect", `cannot connect: ${describeError(e)}`, e)
        )
      )
    }
    socket.once("error", onError)
    socket.once(target.protocol === "tcp" ? "connect" : "secureConnect", () => {
      socket.removeListener("error", onError)
      socket.setNoDelay(true)
      // Keepalive finds a vanished server while the exporter follows a quiet log.
      socket.setKeepAlive(true, 30_000)
      const connection: Connection = { socket, broken: undefined, serverClosed: false }
      const lose = (why: SinkError) => {
        connection.broken ??= why
      }
      socket.on("error", (e: NodeJS.ErrnoException) => lose(sinkError(target, "Write", `connection lost: ${describeError(e)}`, e)))
      socket.on("end", () => {
        connection.serverClosed = true
        lose(sinkError(target, "Write", "the server closed the connection"))
      })
      socket.on("close", () => lose(sinkError(target, "Write", "connection closed")))
      // Syslog servers send nothing; anything they do send is read and dropped so it cannot fill a buffer.
      socket.resume()
      resume(Effect.succeed(connection))
    })
    return Effect.sync(() => socket.destroy())
  }).pipe(
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () => sinkError(target, "Connect", `no connection within ${Duration.format(timeout)}`)
    })
  )

/**
 * Writes the chunks in order, pausing on a full socket buffer until it drains; done when the last was flushed to the
 * kernel. Interrupted midway, the connection may hold half a frame, so it is destroyed.
 */
export const send = (target: SyslogTarget, connection: Connection, data: ReadonlyArray<Buffer>) =>
  Effect.async<void, SinkError>((resume) => {
    const socket = connection.socket
    if (connection.broken !== undefined) return resume(Effect.fail(connection.broken))
    if (data.length === 0) return resume(Effect.void)
    let done = false
    const finish = (failure?: SinkError) => {
      if (done) return
      done = true
      socket.removeListener("error", onError)
      socket.removeListener("close", onClose)
      socket.removeListener("drain", pump)
      if (failure !== undefined) connection.broken ??= failure
      resume(failure === undefined ? Effect.void : Effect.fail(failure))
    }
    const onError = (e: NodeJS.ErrnoException) => finish(sinkError(target, "Write", `connection lost while writing: ${describeError(e)}`, e))
    const onClose = () => finish(connection.broken ?? sinkError(target, "Write", "connection closed while writing"))
    socket.on("error", onError)
    socket.on("close", onClose)
    let i = 0
    function pump() {
      while (i < data.length) {
        const last = i === data.length - 1
        const ok = socket.write(data[i++]!, last ? (e) => finish(e ? sinkError(target, "Write", `write failed: ${e.message}`, e) : undefined) : undefined)
        if (!ok && !last) {
          socket.once("drain", pump)
          return
        }
      }
    }
    pump()
    // Interrupted (a timeout) with part of a frame possibly written: the stream is unusable, start a new one.
    return Effect.sync(() => {
      if (done) return
      done = true
      connection.broken ??= sinkError(target, "Timeout", "write interrupted")
      socket.destroy()
    })
  })

/**
 * Lets the event loop read what already arrived: a server's close that reached the kernel before `close` half-closes
 * must be seen as the server's, not as its answer. A check-phase callback scheduled from a check-phase callback runs
 * only after the next poll phase, where socket reads happen; hence two.
 */
const readPending = Effect.async<void>((resume) => {
  let inner: NodeJS.Immediate | undefined
  const outer = setImmediate(() => {
    inner = setImmediate(() => resume(Effect.void))
  })
  return Effect.sync(() => {
    clearImmediate(outer)
    if (inner !== undefined) clearImmediate(inner)
  })
})

/**
 * Half-closes the connection and waits (within `timeout`) for the server to close it in turn, which a server does
 * only once it read everything; a server that closed first, or a reset on the way, fails it.
 */
export const close = (target: SyslogTarget, connection: Connection, timeout: Duration.Duration) =>
  Effect.async<void, SinkError>((resume) => {
    const socket = connection.socket
    // The server closing first proves nothing about what it read; a dead socket, even less.
    if (connection.serverClosed || socket.destroyed) {
      return resume(Effect.fail(connection.broken ?? sinkError(target, "Write", "connection closed")))
    }
    let failure: SinkError | undefined
    const onError = (e: NodeJS.ErrnoException) => {
      failure ??= sinkError(target, "Write", `connection lost before the server read everything: ${describeError(e)}`, e)
    }
    socket.on("error", onError)
    socket.once("close", () => {
      socket.removeListener("error", onError)
      resume(failure === undefined ? Effect.void : Effect.fail(failure))
    })
    socket.end()
    return Effect.sync(() => socket.destroy())
  }).pipe(
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () => sinkError(target, "Timeout", `the server did not close within ${Duration.format(timeout)} of the sink`)
    }),
    Effect.ensuring(Effect.sync(() => connection.socket.destroy())),
    (closing) => Effect.zipRight(readPending, closing)
  )
