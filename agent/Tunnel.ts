/**
 * The agent's local TCP ends of tunnels: the exposing side connects a stream to its target, the reaching side
 * listens on a local port and turns every accepted socket into a stream to a service.
 */
import * as Net from "node:net"
import { Effect } from "effect"
import type { Scope } from "effect"
import { Error as ErrorMessage } from "../core/Protocol.ts"
import { TransportError } from "../core/Transport.ts"
import type { Connection } from "../core/Transport.ts"
import * as Mux from "../transports/Mux.ts"

/** A local target behind a service name. */
export interface Target {
  readonly host: string
  readonly port: number
}

/**
 * A target that neither connects nor refuses within 10 s (a black-holed host) resets the stream; a refused one
 * resets it at once, so the reaching client sees its connection closed promptly.
 */
export const CONNECT_TIMEOUT_MS = 10_000

/** Connects a stream the hub opened to `target` (or refuses it when the service is unknown here). */
export const connectTarget = (
  connection: Connection,
  mux: Mux.Mux,
  stream: number,
  target: Target | undefined,
  service: string
): void => {
  if (!target) {
    connection.send(
      new ErrorMessage({ code: "ServiceNotFound", message: `Service not found: ${service}`, stream }, true)
    )
    return
  }
  // Half-open: the client's shutdown(WR) must reach the target as EOF while the answer still flows back. The socket
  // reads into the mux's shared buffer: the stream engine copies what it keeps.
  let input: (chunk: Buffer) => void = () => {}
  const socket = Net.connect({
    host: target.host,
    port: target.port,
    allowHalfOpen: true,
    noDelay: true,
    onread: {
      buffer: Mux.READ_BUFFER,
      callback: (n) => {
        input(Mux.READ_BUFFER.subarray(0, n))
        // Never false: the stream engine pauses the socket itself when credit runs out.
        return true
      }
    }
  })
  const timer = setTimeout(() => {
    const error: NodeJS.ErrnoException = new globalThis.Error(`connect to ${target.host}:${target.port} timed out`)
    error.code = "ETIMEDOUT"
    socket.destroy(error)
  }, CONNECT_TIMEOUT_MS)
  socket.once("connect", () => {
    clearTimeout(timer)
    Mux.opened(connection, stream)
  })
  socket.once("close", () => clearTimeout(timer))
  input = mux.attach(stream, socket)
}

/** A bound reach listener. */
export interface Listener {
  readonly host: string
  readonly port: number
}

/**
 * Listens on `host:port` (0: a free port) in half-open, TCP_NODELAY mode and hands each accepted socket to `accept`
 * (typically `HubClientService.open`) until the scope closes.
 */
export const listen = (
  accept: (socket: Net.Socket) => void,
  host: string,
  port: number
): Effect.Effect<Listener, TransportError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<Net.Server & { readonly bound: Listener }, TransportError>((resume) => {
      const server = Net.createServer({ allowHalfOpen: true, noDelay: true }, accept)
      server.once("error", (error) =>
        resume(Effect.fail(new TransportError({ reason: "Open", message: `cannot listen on ${host}:${port}: ${error.message}`, cause: error }))))
      server.listen(port, host, () => {
        const address = server.address() as Net.AddressInfo
        resume(Effect.succeed(Object.assign(server, { bound: { host: address.address, port: address.port } })))
      })
    }),
    (server) =>
      Effect.async<void>((resume) => {
        // Sockets already accepted belong to their streams; closing only stops new ones.
        server.close()
        resume(Effect.void)
      })
  ).pipe(Effect.map((server) => server.bound))
