/**
 * The agent's connection to the hub: dials with a chosen transport, authenticates with `Hello`, then exposes local
 * targets and binds reach listeners whose sockets are multiplexed as streams over that one connection.
 */
import type * as Net from "node:net"
import { Context, Deferred, Duration, Effect, FiberId } from "effect"
import type { Scope } from "effect"
import * as Protocol from "../core/Protocol.ts"
import { RelayDenied } from "../core/RelayPolicy.ts"
import { CLOSE_CODES, TransportError } from "../core/Transport.ts"
import type { CloseInfo, Connection, Transport } from "../core/Transport.ts"
import * as Heartbeat from "../transports/Heartbeat.ts"
import * as Mux from "../transports/Mux.ts"
import * as Check from "./Check.ts"
import * as Tunnel from "./Tunnel.ts"

/** Options of `connect`. */
export interface ConnectOptions {
  /** Hub URL (`ws://host:port`). */
  readonly url: string
  /** Transport plugin to dial with. */
  readonly transport: Transport
  /** Agent token. */
  readonly token: string
  /** Agent label for the audit log. */
  readonly label?: string
  /** Agent software version (default "dev"). */
  readonly agentVersion?: string
  /** Heartbeat timing (default `Heartbeat.defaults`). */
  readonly heartbeat?: Heartbeat.HeartbeatOptions
  /** Time to wait for `Welcome` (default 10 s). */
  readonly helloTimeout?: Duration.DurationInput
  /** Stream window (default `STREAM_WINDOW`; must match the hub's). */
  readonly window?: number
  /** Protocol revision to speak (default `PROTOCOL_REVISION`; 0 plays an agent from before revisions existed). */
  readonly revision?: number
}

/** A live, authenticated connection to the hub. */
export interface HubClientService {
  /** The hub's `Welcome` (agent id, workspace id, token expiry warning). */
  readonly welcome: Protocol.Welcome
  /** The underlying connection. */
  readonly connection: Connection
  /** Publishes `host:port` under `name`; streams the hub opens for it connect there. */
  readonly expose: (name: string, host: string, port: number) => Effect.Effect<void, RelayDenied | TransportError>
  /** Withdraws a published service. */
  readonly unexpose: (name: string) => Effect.Effect<void, RelayDenied | TransportError>
  /**
   * Relays an already-accepted local socket as a new stream to `service` over this connection, exactly like a socket
   * accepted by `reach`'s listener: bytes the client sent first are kept, half-close and resets are relayed, and a
   * refused stream (unknown service, target down, hub gone) destroys the socket promptly with a reset. The socket is
   * switched to half-open mode and TCP_NODELAY; create the listener with `allowHalfOpen: true` (as `Tunnel.listen`
   * does) so that a FIN arriving before the hand-over is kept too. Lets a process that outlives this connection
   * own the listener.
   */
  readonly open: (service: string, socket: Net.Socket) => void
  /** Binds a local listener for service `name` (port 0: a free port) until the scope closes. */
  readonly reach: (
    name: string,
    options?: { readonly port?: number; readonly host?: string }
  ) => Effect.Effect<Tunnel.Listener, RelayDenied | TransportError, Scope.Scope>
  /**
   * Checks service `name` from the exposing agent's side (DNS, TCP, TLS, HTTP; see `Check.probe`); the hub resolves
   * and audits it like a reach. `latencyMs` is the round trip through the hub without the probe's own time.
   */
  readonly check: (name: string) => Effect.Effect<Check.CheckOutput, RelayDenied | TransportError>
  /** Live streams, bytes waiting in local sockets and the connection, and messages received. */
  readonly stats: () => {
    readonly streams: number
    readonly bufferedBytes: number
    readonly connectionBuffered: number
    /** Transport messages received from the hub (WebSocket messages: a batch counts once). */
    readonly received: number
  }
  /**
   * Completes when the connection closes, with how it closed: at once when the hub closes or its process dies, and
   * within the heartbeat timeout when it goes silent.
   */
  readonly closed: Effect.Effect<CloseInfo>
}

/** The agent's hub connection. */
export class HubClient extends Context.Tag("connect/agent/HubClient")<HubClient, HubClientService>() {}

type Failure = RelayDenied | TransportError

/** An Expose in flight: its target takes effect when the hub's Ack arrives (see `Requests.answer`). */
interface PendingExpose {
  readonly name: string
  readonly target: Tunnel.Target
}

/** The requests in flight on one connection, by request id, and how each is answered. */
interface Requests {
  /** Sends the request `make` builds and waits for its Ack or Error; `onAck` is the target an Expose publishes. */
  readonly call: (make: (request: number) => Protocol.Message, onAck?: PendingExpose) => Effect.Effect<void, Failure>
  /** Sends a Check of service `name` and waits for its report, with the round trip through the hub. */
  readonly check: (name: string) => Effect.Effect<Check.CheckOutput, Failure>
  /** Completes the request an Ack, CheckResult or Error (with a request id) answers. */
  readonly answer: (message: Protocol.Ack | Protocol.CheckResult | Protocol.Error, request: number) => void
  /** Fails every request in flight (the connection closed). */
  readonly failAll: (error: TransportError) => void
}

/** The hub's `Error` as the refusal the caller sees (an unknown code reads as "Unavailable"). */
const denied = (error: Protocol.Error) =>
  new RelayDenied({
    code: (RelayDenied.fields.code.literals as ReadonlyArray<string>).includes(error.code)
      ? (error.code as RelayDenied["code"])
      : "Unavailable",
    message: error.message
  })

const closedError = () => new TransportError({ reason: "Closed", message: "hub connection is closed" })

/** No request in flight on `connection` yet; an acknowledged Expose puts its target into `exposes`. */
const makeRequests = (connection: Connection, exposes: Map<string, Tunnel.Target>): Requests => {
  const requests = new Map<number, Deferred.Deferred<void, Failure>>()
  const checks = new Map<number, Deferred.Deferred<Protocol.CheckReport, Failure>>()
  const acked = new Map<number, PendingExpose>()
  let nextRequest = 1

  const take = <A>(table: Map<number, Deferred.Deferred<A, Failure>>, request: number) => {
    const pending = table.get(request)
    table.delete(request)
    return pending
  }

  return {
    call: (make, onAck) =>
      Effect.suspend(() => {
        if (connection.closed) return Effect.fail(closedError())
        const request = nextRequest++
        const done = Deferred.unsafeMake<void, Failure>(FiberId.none)
        requests.set(request, done)
        if (onAck) acked.set(request, onAck)
        connection.send(make(request))
        return Effect.ensuring(Deferred.await(done), Effect.sync(() => acked.delete(request)))
      }),
    check: (name) =>
      Effect.suspend(() => {
        if (connection.closed) return Effect.fail(closedError())
        const request = nextRequest++
        const done = Deferred.unsafeMake<Protocol.CheckReport, Failure>(FiberId.none)
        checks.set(request, done)
        const started = performance.now()
        connection.send(new Protocol.Check({ request, name }))
        return Effect.map(Deferred.await(done), (report): Check.CheckOutput => ({
          service: name,
          ...report,
          latencyMs: Math.max(0, Math.round((performance.now() - started - report.elapsedMs) * 10) / 10)
        }))
      }),
    answer: (message, request) => {
      switch (message._tag) {
        case "Ack": {
          // A new target takes effect with the hub's Ack, in this handler: an Open right behind the Ack finds it, and a
          // target the hub refuses is never connected to.
          const target = acked.get(request)
          if (target) exposes.set(target.name, target.target)
          const pending = take(requests, request)
          if (pending) Deferred.unsafeDone(pending, Effect.void)
          return
        }
        case "CheckResult": {
          const pending = take(checks, request)
          if (pending) Deferred.unsafeDone(pending, Effect.succeed(message.report))
          return
        }
        case "Error": {
          const check = take(checks, request)
          if (check) Deferred.unsafeDone(check, Effect.fail(denied(message)))
          const pending = take(requests, request)
          if (pending) Deferred.unsafeDone(pending, Effect.fail(denied(message)))
          return
        }
      }
    },
    failAll: (error) => {
      for (const pending of requests.values()) Deferred.unsafeDone(pending, Effect.fail(error))
      requests.clear()
      for (const pending of checks.values()) Deferred.unsafeDone(pending, Effect.fail(error))
      checks.clear()
    }
  }
}

/** Runs the probe the hub asks for against the exposed target and sends its report back. */
const probe = (connection: Connection, message: Protocol.Probe, target: Tunnel.Target | undefined) => {
  const request = message.request
  const report: Promise<Protocol.CheckReport> = target
    ? Check.probe(target.host, target.port)
    : Promise.resolve(Check.notExposed(message.service))
  report.then((r) => {
    if (!connection.closed) connection.send(new Protocol.ProbeResult({ request, report: r }))
  })
}

/** Dials the hub, authenticates and returns the client; everything is closed with the scope. */
export const connect = Effect.fn("HubClient.connect")(function*(options: ConnectOptions) {
  const connection = yield* options.transport.dial(options.url)
  const welcome = yield* Deferred.make<Protocol.Welcome, Failure>()
  const closed = yield* Deferred.make<CloseInfo>()
  const exposes = new Map<string, Tunnel.Target>()
  const requests = makeRequests(connection, exposes)
  let ready = false

  const mux = Mux.make(connection, options.window === undefined ? {} : { window: options.window })
  const revision = options.revision ?? Protocol.PROTOCOL_REVISION

  connection.setHandler({
    message: (message) => {
      if (mux.handle(message)) return
      switch (message._tag) {
        case "Welcome":
          ready = true
          // The hub reads batch frames only if it said so; an older hub sends no revision (0).
          if (Protocol.negotiateRevision(revision, message.revision) >= Protocol.BATCH_REVISION) {
            connection.enableBatching?.()
          }
          return Deferred.unsafeDone(welcome, Effect.succeed(message))
        case "Ack":
        case "CheckResult":
          return requests.answer(message, message.request)
        case "Error":
          if (message.request !== undefined) return requests.answer(message, message.request)
          if (!ready) Deferred.unsafeDone(welcome, Effect.fail(denied(message)))
          return
        case "Probe":
          return probe(connection, message, exposes.get(message.service))
        case "Open":
          return Tunnel.connectTarget(connection, mux, message.stream, exposes.get(message.service), message.service)
        case "Ping":
          return connection.send(new Protocol.Pong({ nonce: message.nonce }))
        case "Pong":
          return
        default:
          return connection.close(CLOSE_CODES.Protocol, `unexpected ${message._tag}`)
      }
    },
    drain: () => mux.drain(),
    close: (info) => {
      mux.closeAll("HubDisconnected")
      const gone = new TransportError({ reason: "Closed", message: `hub connection closed: ${info.code} ${info.reason}` })
      Deferred.unsafeDone(welcome, Effect.fail(gone))
      requests.failAll(gone)
      Deferred.unsafeDone(closed, Effect.succeed(info))
    }
  })

  connection.send(
    new Protocol.Hello({
      protocol: Protocol.PROTOCOL_VERSION,
      token: options.token,
      transport: options.transport.name,
      agentVersion: options.agentVersion ?? "dev",
      ...(options.label === undefined ? {} : { label: options.label }),
      ...(revision === 0 ? {} : { revision })
    })
  )
  const welcomed = yield* Deferred.await(welcome).pipe(
    Effect.timeoutFail({
      duration: options.helloTimeout ?? "10 seconds",
      onTimeout: () => new TransportError({ reason: "Timeout", message: "no Welcome from the hub" })
    })
  )
  yield* Effect.forkScoped(Effect.ignore(Heartbeat.run(connection, options.heartbeat ?? Heartbeat.defaults)))

  const open = (service: string, socket: Net.Socket): void => {
    if (connection.closed || socket.destroyed) {
      socket.on("error", () => {})
      socket.resetAndDestroy()
      return
    }
    // A client's shutdown(WR) must reach the target as EOF while the answer still flows back.
    socket.allowHalfOpen = true
    mux.open(service, socket)
  }

  return HubClient.of({
    welcome: welcomed,
    connection,
    expose: Effect.fn("HubClient.expose")(function*(name: string, host: string, port: number) {
      yield* requests.call((request) => new Protocol.Expose({ request, name, host, port }), { name, target: { host, port } })
    }),
    unexpose: Effect.fn("HubClient.unexpose")(function*(name: string) {
      yield* requests.call((request) => new Protocol.Unexpose({ request, name }))
      exposes.delete(name)
    }),
    open,
    reach: Effect.fn("HubClient.reach")(function*(name: string, reachOptions?: { readonly port?: number; readonly host?: string }) {
      yield* requests.call((request) => new Protocol.Reach({ request, name }))
      return yield* Tunnel.listen((socket) => open(name, socket), reachOptions?.host ?? "127.0.0.1", reachOptions?.port ?? 0)
    }),
    check: (name: string) => requests.check(name).pipe(Effect.withSpan("HubClient.check")),
    stats: () => ({
      streams: mux.size(),
      bufferedBytes: mux.bufferedBytes(),
      connectionBuffered: connection.bufferedAmount,
      received: connection.received
    }),
    closed: Deferred.await(closed)
  })
})
