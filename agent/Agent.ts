/**
 * The running agent (`connect up`): keeps one authenticated connection to the hub alive (reconnecting with backoff),
 * restores its exposures after every (re)connect, owns the reach listeners so local ports stay bound while the hub
 * is away, and serves the control socket through which the other `connect` commands act on it.
 */
import * as Fs from "node:fs"
import * as Net from "node:net"
import { Deferred, Effect, Fiber, Option, Schema } from "effect"
import type { Scope } from "effect"
import { RelayDenied } from "../core/RelayPolicy.ts"
import { CloseCodes, TransportError } from "../core/Transport.ts"
import type { Transport } from "../core/Transport.ts"
import * as Msgpack from "../transports/Msgpack.ts"
import * as Ws from "../transports/Ws.ts"
import * as Backoff from "./Backoff.ts"
import type * as Check from "./Check.ts"
import * as Control from "./Control.ts"
import * as HubApi from "./HubApi.ts"
import * as HubClient from "./HubClient.ts"
import * as State from "./State.ts"

/** Transport plugins the agent can dial with, by `--transport` name. */
export const transports: ReadonlyMap<string, Transport> = new Map([
  [Ws.transport.name, Ws.transport],
  [Msgpack.transport.name, Msgpack.transport]
])

/** Why the agent stopped or refused an operation. */
export class AgentError extends Schema.TaggedError<AgentError>()("AgentError", {
  /**
   * "NotProvisioned": no state in CONNECT_HOME; "Unauthorized": the hub refuses the token; "Denied": the hub refused
   * an expose or reach (see `code`); "NotFound": no such exposure; "Listen": a reach port cannot be bound;
   * "AlreadyRunning": another agent owns this CONNECT_HOME; "Detach": the background agent did not come up;
   * "Offline": not connected to the hub; "CheckFailed": `reach --check` found DNS or TCP failing on the exposer's side.
   */
  reason: Schema.Literal(
    "NotProvisioned",
    "Unauthorized",
    "Denied",
    "NotFound",
    "Listen",
    "AlreadyRunning",
    "Detach",
    "Offline",
    "CheckFailed"
  ),
  message: Schema.String,
  code: Schema.optional(Schema.String)
}) {}

/** The message for a CONNECT_HOME without credentials. */
export const notProvisioned = (home: string) =>
  new AgentError({
    reason: "NotProvisioned",
    message: `no agent credentials in ${home}: run \`connect up --hub URL --api-key KEY\` first`
  })

/**
 * How long a socket accepted by a reach listener waits for the hub connection to come back before it is closed:
 * long enough to ride out a hub restart and the first backoff steps, short enough that a client is not left hanging.
 */
export const PendingMs = 10_000

/** Least time between two reconnects triggered by local connections waiting on a reach port. */
export const WakeIntervalMs = 1_000

/** Mean interval between TCP probes of a hub that is down (see `pause` in `make`). */
export const ProbeIntervalMs = 1_000

// Errors of a TCP connect that mean nothing listens (or the host is gone), as opposed to a hub that answers badly.
const DownCodes: ReadonlySet<string> = new Set(["ECONNREFUSED", "ECONNRESET", "EHOSTUNREACH", "ENETUNREACH", "EHOSTDOWN", "ENOTFOUND", "EAI_AGAIN"])

/** The token expiry warning is printed from this long before expiry (DESIGN.md: 7 days). */
export const ExpiryWarningMs = 7 * 24 * 60 * 60 * 1000

/** Options of `make`. */
export interface AgentOptions {
  /** CONNECT_HOME of this agent. */
  readonly home: string
  /** Where user-facing lines go (default stdout). */
  readonly out?: (line: string) => void
  /** Where warnings and connection trouble go (default stderr). */
  readonly err?: (line: string) => void
  /** Reconnect backoff (default: first retry ≤ 500 ms, cap 30 s). */
  readonly backoff?: Backoff.BackoffOptions
  /** Agent software version sent in `Hello`. */
  readonly agentVersion?: string
  /** See `PendingMs`. */
  readonly pendingMs?: number
}

/** What `connect status` shows. */
export interface Status {
  readonly hub: string
  readonly agentId: string
  readonly workspaceId: string
  readonly label?: string | undefined
  readonly transport: string
  /** ISO expiry of the agent token, when the hub reported one (the token itself is never shown). */
  readonly tokenExpiresAt?: string | undefined
  readonly running: boolean
  readonly connected: boolean
  readonly pid?: number
  readonly exposures: ReadonlyArray<State.Exposure>
  readonly reaches: ReadonlyArray<{ readonly name: string; readonly port: number; readonly bound: boolean }>
}

/**
 * The status of the agent whose state is `state`: `live` describes the running process (its connection and bound reach
 * ports); without it, the agent is not running and nothing is bound.
 */
export const statusOf = (
  state: State.AgentState,
  live?: {
    readonly connected: boolean
    readonly pid: number
    readonly bound: (name: string) => number | undefined
  }
): Status => ({
  hub: state.hubUrl,
  agentId: state.agentId,
  workspaceId: state.workspaceId,
  label: state.label,
  transport: state.transport,
  tokenExpiresAt: state.tokenExpiresAt,
  running: live !== undefined,
  connected: live?.connected ?? false,
  ...(live ? { pid: live.pid } : {}),
  exposures: state.exposures,
  reaches: Object.entries(state.reaches).map(([name, port]) => {
    const bound = live?.bound(name)
    return { name, port: bound ?? port, bound: bound !== undefined }
  })
})

/** Result of an expose: `pending` when the agent is not connected and will expose it on reconnect. */
export interface Exposed extends State.Exposure {
  readonly pending: boolean
}

/** A bound reach. */
export interface Reached {
  readonly name: string
  readonly port: number
}

/** A running agent. */
export interface Agent {
  /** Publishes `host:port` as `name` (now if connected, else on reconnect) and keeps it in the state file. */
  readonly expose: (name: string, host: string, port: number) => Effect.Effect<Exposed, AgentError | State.StateError>
  /** Withdraws `name` and removes it from the state file. */
  readonly unexpose: (name: string) => Effect.Effect<void, AgentError | State.StateError>
  /** Binds (or returns) the local listener of service `name`, checking with the hub first when connected. */
  readonly reach: (name: string, port?: number) => Effect.Effect<Reached, AgentError | State.StateError>
  /** Checks service `name` from the exposing agent's side (see `HubClient.check`); needs the hub connection. */
  readonly check: (name: string) => Effect.Effect<Check.CheckOutput, AgentError>
  /** Closes the listener of `name` (open connections keep flowing) and forgets its port. */
  readonly unreach: (name: string) => Effect.Effect<void, AgentError | State.StateError>
  /** The agent as `connect status` shows it. */
  readonly status: () => Status
  /** Completes at the first successful connection. */
  readonly connected: Effect.Effect<void>
  /** The connection loop; fails only when the hub refuses the token or the state file goes away. */
  readonly loop: Fiber.Fiber<never, AgentError | State.StateError>
}

const authCodes: ReadonlySet<string> = new Set(["Unauthorized", "TokenExpired", "TokenRevoked"])

const describe = (error: unknown): string =>
  error instanceof Error || (typeof error === "object" && error !== null && "message" in error)
    ? String((error as { message: unknown }).message)
    : String(error)

const loadRequired = (home: string) =>
  Effect.flatMap(State.load(home), Option.match({ onNone: () => Effect.fail(notProvisioned(home)), onSome: Effect.succeed }))

/**
 * Starts the agent of `options.home`: writes its pid file, serves the control socket, binds the stored reaches and
 * forks the connection loop; everything is stopped and the files removed when the scope closes.
 */
export const make = (options: AgentOptions): Effect.Effect<Agent, AgentError | State.StateError | Control.ControlError, Scope.Scope> =>
  Effect.gen(function*() {
    const home = options.home
    const files = State.paths(home)
    const stamp = () => (process.stdout.isTTY ? "" : `${new Date().toISOString()} `)
    const out = options.out ?? ((line: string) => console.log(`${stamp()}${line}`))
    const err = options.err ?? ((line: string) => console.error(`${stamp()}${line}`))
    const pendingMs = options.pendingMs ?? PendingMs
    let state = yield* loadRequired(home)
    let current: HubClient.HubClientService | undefined
    const listeners = new Map<string, { readonly server: Net.Server; readonly port: number }>()
    const pending = new Set<{ readonly name: string; readonly socket: Net.Socket; readonly timer: NodeJS.Timeout }>()
    const firstConnected = yield* Deferred.make<void>()
    const lock = yield* Effect.makeSemaphore(1)
    const serialized = lock.withPermits(1)

    /** Cuts the current backoff wait short; set while the loop waits. */
    let wake: (() => void) | undefined
    let lastWake = 0

    const live = () => (current !== undefined && !current.connection.closed ? current : undefined)

    const accept = (name: string) => (socket: Net.Socket) => {
      socket.on("error", () => {})
      const client = live()
      if (client) return client.open(name, socket)
      const entry = {
        name,
        socket,
        timer: setTimeout(() => {
          pending.delete(entry)
          err(`reach ${name}: not connected to the hub for ${pendingMs / 1000} s; closed a local connection`)
          socket.resetAndDestroy()
        }, pendingMs)
      }
      pending.add(entry)
      // A user is waiting on this port: try the hub now rather than after the rest of the backoff (at most once a
      // second, so a client retrying in a loop cannot turn into a reconnect storm).
      if (wake !== undefined && Date.now() - lastWake >= WakeIntervalMs) {
        lastWake = Date.now()
        err(`reach ${name}: a local connection is waiting; reconnecting now`)
        wake()
      }
      socket.once("close", () => {
        clearTimeout(entry.timer)
        pending.delete(entry)
      })
    }

    /**
     * Hands the sockets that waited for the hub to the new connection, service by service, once the hub says the
     * service can be reached: right after a hub restart the exposing agent may not be back yet, and a socket opened
     * too early would be reset although the service returns a moment later. Checks every 500 ms (each check is a
     * `Reach` the hub audits, so not more often); each socket still gives up after `pendingMs`.
     */
    const flushPending = (client: HubClient.HubClientService) =>
      Effect.gen(function*() {
        while (pending.size > 0 && !client.connection.closed) {
          for (const name of new Set([...pending].map((e) => e.name))) {
            const ready = yield* Effect.scoped(client.reach(name, { port: 0 })).pipe(
              Effect.as(true),
              Effect.orElseSucceed(() => false)
            )
            if (!ready || client.connection.closed) continue
            for (const entry of pending) {
              if (entry.name !== name) continue
              clearTimeout(entry.timer)
              pending.delete(entry)
              if (!entry.socket.destroyed) client.open(entry.name, entry.socket)
            }
          }
          if (pending.size > 0) yield* Effect.sleep("500 millis")
        }
      })

    const bind = (name: string, port: number) =>
      Effect.async<number, AgentError>((resume) => {
        // Half-open: a client's shutdown(WR) before the hand-over to the hub connection must not be lost.
        const server = Net.createServer({ allowHalfOpen: true, noDelay: true }, accept(name))
        server.once("error", (error: NodeJS.ErrnoException) =>
          resume(
            Effect.fail(
              new AgentError({
                reason: "Listen",
                code: error.code ?? "Error",
                message: `reach ${name}: cannot listen on 127.0.0.1:${port}: ${error.message}`
              })
            )
          ))
        server.listen(port, "127.0.0.1", () => {
          const bound = (server.address() as Net.AddressInfo).port
          listeners.set(name, { server, port: bound })
          resume(Effect.succeed(bound))
        })
      })

    /** Binds the stored port of `name`, or a new one when another process took it meanwhile. */
    const bindStable = (name: string, requested?: number) => {
      const want = State.reachPort(state, name, requested)
      return bind(name, want).pipe(
        Effect.catchIf(
          (e) => e.code === "EADDRINUSE" && want !== 0 && (requested === undefined || requested === 0),
          () =>
            Effect.zipRight(
              Effect.sync(() => err(`reach ${name}: port ${want} is taken by another process; using a new one`)),
              bind(name, 0)
            )
        ),
        Effect.tap((port) =>
          port === state.reaches[name]
            ? Effect.void
            : Effect.map(State.update(home, (s) => State.withReach(s, name, port)), (s) => {
              state = s
            })
        )
      )
    }

    const unbind = (name: string) => {
      const listener = listeners.get(name)
      listeners.delete(name)
      listener?.server.close()
    }

    const denied = (what: string, error: RelayDenied) =>
      new AgentError({ reason: "Denied", code: error.code, message: `cannot ${what}: ${error.message}` })

    const expose = (name: string, host: string, port: number) =>
      serialized(
        Effect.gen(function*() {
          const client = live()
          let exposed = false
          if (client) {
            exposed = yield* client.expose(name, host, port).pipe(
              Effect.as(true),
              Effect.catchTag("RelayDenied", (e) => Effect.fail(denied(`expose ${name}`, e))),
              // The connection died under us: keep it in the state; it is exposed on reconnect.
              Effect.catchTag("TransportError", () => Effect.succeed(false))
            )
          }
          state = yield* State.update(home, (s) => State.withExposure(s, { name, host, port }))
          return { name, host, port, pending: !exposed }
        })
      )

    const unexpose = (name: string) =>
      serialized(
        Effect.gen(function*() {
          if (!state.exposures.some((e) => e.name === name)) {
            return yield* new AgentError({ reason: "NotFound", message: `this agent does not expose a service named ${name}` })
          }
          const client = live()
          // The hub forgets the service with the connection anyway; only a refusal other than "gone" matters.
          if (client) {
            yield* client.unexpose(name).pipe(
              Effect.catchTag("TransportError", () => Effect.void),
              Effect.catchTag("RelayDenied", (e) => (e.code === "ServiceNotFound" ? Effect.void : Effect.fail(denied(`unexpose ${name}`, e))))
            )
          }
          state = yield* State.update(home, (s) => State.withoutExposure(s, name))
        })
      )

    const reach = (name: string, port?: number) =>
      serialized(
        Effect.gen(function*() {
          const client = live()
          if (client) {
            // Asks the hub whether the service exists and may be reached (audited as ReachDenied if not); the probe
            // listener HubClient binds for it is closed at once, ours below is the one that stays.
            yield* Effect.scoped(client.reach(name, { port: 0 })).pipe(
              Effect.catchTag("RelayDenied", (e) => Effect.fail(denied(`reach ${name}`, e))),
              Effect.catchTag("TransportError", () => Effect.void)
            )
          }
          const existing = listeners.get(name)
          if (existing && (port === undefined || port === 0 || port === existing.port)) {
            return { name, port: existing.port }
          }
          if (existing) unbind(name)
          return { name, port: yield* bindStable(name, port) }
        })
      )

    const check = (name: string) =>
      Effect.suspend(() => {
        const client = live()
        if (!client) {
          return Effect.fail(new AgentError({ reason: "Offline", message: `cannot check ${name}: not connected to the hub` }))
        }
        return client.check(name).pipe(
          Effect.catchTags({
            RelayDenied: (e) => Effect.fail(denied(`check ${name}`, e)),
            TransportError: (e) => Effect.fail(new AgentError({ reason: "Offline", message: `cannot check ${name}: ${e.message}` }))
          })
        )
      })

    const unreach = (name: string) =>
      serialized(
        Effect.gen(function*() {
          if (!listeners.has(name) && state.reaches[name] === undefined) {
            return yield* new AgentError({ reason: "NotFound", message: `this agent does not reach a service named ${name}` })
          }
          unbind(name)
          state = yield* State.update(home, (s) => State.withoutReach(s, name))
        })
      )

    const status = (): Status =>
      statusOf(state, { connected: live() !== undefined, pid: process.pid, bound: (name) => listeners.get(name)?.port })

    const answer = <A>(effect: Effect.Effect<A, AgentError | State.StateError>): Promise<Control.Response> =>
      Effect.runPromise(
        effect.pipe(
          Effect.map((result): Control.Response => ({ ok: true, result })),
          Effect.catchAll((e) =>
            Effect.succeed<Control.Response>({
              ok: false,
              error: { code: e._tag === "AgentError" ? e.code ?? e.reason : e.reason, message: e.message }
            })
          )
        )
      )

    const handle = (request: Control.Request): Promise<Control.Response> => {
      switch (request.op) {
        case "status":
          return Promise.resolve({ ok: true, result: status() })
        case "expose":
          return answer(expose(request.name, request.host, request.port))
        case "unexpose":
          return answer(unexpose(request.name))
        case "reach":
          return answer(reach(request.name, request.port))
        case "unreach":
          return answer(unreach(request.name))
        case "check":
          return answer(check(request.name))
        default:
          return Promise.resolve({ ok: false, error: { code: "BadRequest", message: "unknown operation" } })
      }
    }

    // The control socket first: it is what detects a second agent on the same CONNECT_HOME.
    yield* Control.serve(files.socket, handle)
    // The pid file names this process while it runs; removed only if it still names this process.
    yield* Effect.acquireRelease(
      Effect.try({
        try: () => Fs.writeFileSync(files.pid, `${process.pid}\n`, { mode: 0o644 }),
        catch: (e) => new State.StateError({ reason: "Write", message: `cannot write ${files.pid}: ${describe(e)}` })
      }),
      () =>
        Effect.sync(() => {
          try {
            if (Fs.readFileSync(files.pid, "utf8").trim() === String(process.pid)) Fs.rmSync(files.pid, { force: true })
          } catch {
            // Already gone.
          }
        })
    )

    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const name of [...listeners.keys()]) unbind(name)
        for (const entry of pending) {
          clearTimeout(entry.timer)
          entry.socket.resetAndDestroy()
        }
        pending.clear()
      })
    )

    for (const name of Object.keys(state.reaches)) {
      yield* bindStable(name).pipe(Effect.catchTag("AgentError", (e) => Effect.sync(() => err(e.message))))
    }

    const session = Effect.scoped(
      Effect.gen(function*() {
        // Re-read on every attempt: `connect up --rotate-token` may have stored a new token meanwhile.
        state = yield* loadRequired(home)
        const transport = transports.get(state.transport) ?? Ws.transport
        const client = yield* HubClient.connect({
          url: HubApi.gatewayUrl(state.hubUrl),
          transport,
          token: state.token,
          ...(state.label === undefined ? {} : { label: state.label }),
          agentVersion: options.agentVersion ?? "dev"
        })
        const since = Date.now()
        yield* serialized(
          Effect.gen(function*() {
            current = client
            out(`connected to ${state.hubUrl} as ${client.welcome.agentId} (workspace ${client.welcome.workspaceId})`)
            const expires = client.welcome.tokenExpiresAt
            if (expires !== undefined && Date.parse(expires) - Date.now() < ExpiryWarningMs) {
              const days = Math.max(0, Math.floor((Date.parse(expires) - Date.now()) / 86_400_000))
              err(`warning: the agent token expires at ${expires} (in ${days} day${days === 1 ? "" : "s"}); run \`connect up --rotate-token\``)
            }
            for (const exposure of state.exposures) {
              yield* client.expose(exposure.name, exposure.host, exposure.port).pipe(
                Effect.catchAll((e) => Effect.sync(() => err(`expose ${exposure.name}: ${e.message}`)))
              )
            }
          })
        )
        yield* Effect.forkScoped(flushPending(client))
        yield* Deferred.succeed(firstConnected, undefined)
        const info = yield* client.closed
        return { info, since }
      }).pipe(Effect.ensuring(Effect.sync(() => (current = undefined))))
    )

    /**
     * Waits `delay` ms, or less: a local connection waiting on a reach port cuts it short (`wake`), and so does the
     * hub's port accepting TCP again when `probe` is given. Probing is a bare TCP connect every ~1 s (jittered), far
     * cheaper for a hub than a WebSocket handshake with a token check, and only done while the hub was *down*
     * (refused or dropped the connection), so a restarted hub gets its agents back within about a second instead of
     * after a backoff that grew while it was away; a hub that is up but failing keeps the full backoff.
     */
    const pause = (delay: number, probe: { readonly host: string; readonly port: number } | undefined) =>
      Effect.async<"elapsed" | "woken" | "hubBack">((resume) => {
        let done = false
        let probing: Net.Socket | undefined
        let probeTimer: NodeJS.Timeout | undefined
        const stop = () => {
          done = true
          wake = undefined
          clearTimeout(timer)
          clearTimeout(probeTimer)
          probing?.destroy()
        }
        const finish = (why: "elapsed" | "woken" | "hubBack") => {
          if (done) return
          stop()
          resume(Effect.succeed(why))
        }
        const timer = setTimeout(() => finish("elapsed"), delay)
        wake = () => finish("woken")
        const schedule = () => {
          if (done || probe === undefined) return
          probeTimer = setTimeout(() => {
            const socket = Net.connect({ host: probe.host, port: probe.port })
            probing = socket
            socket.once("connect", () => {
              socket.destroy()
              if (!done) err("the hub accepts connections again; reconnecting now")
              finish("hubBack")
            })
            socket.once("error", () => {
              socket.destroy()
              schedule()
            })
          }, ProbeIntervalMs / 2 + Math.random() * ProbeIntervalMs)
        }
        schedule()
        return Effect.sync(stop)
      })

    const hubAddress = (hubUrl: string) => {
      const url = new URL(hubUrl)
      return { host: url.hostname.replace(/^\[|\]$/g, ""), port: Number(url.port || (url.protocol === "https:" ? 443 : 80)) }
    }

    /** A failure to even open TCP to the hub: its process (or machine) is down, not refusing us. */
    const hubDown = (error: unknown): boolean => {
      const cause = (error as { cause?: { code?: unknown } }).cause
      return error instanceof TransportError && error.reason === "Open" &&
        typeof cause?.code === "string" && DownCodes.has(cause.code)
    }

    const loop = Effect.gen(function*() {
      const backoff = Backoff.make(options.backoff)
      while (true) {
        const result = yield* Effect.either(session)
        let down = false
        if (result._tag === "Right") {
          const { info, since } = result.right
          if (Date.now() - since >= Backoff.StableAfterMs) backoff.reset()
          err(`disconnected from the hub (${info.code}${info.reason === "" ? "" : ` ${info.reason}`})`)
          // Vanished, going away or silent: the hub is probably restarting. Any other close is its decision.
          down = info.code === 1006 || info.code === CloseCodes.GoingAway || info.code === CloseCodes.Timeout
        } else {
          const error = result.left
          if (error._tag === "AgentError" || error._tag === "StateError") return yield* Effect.fail(error)
          if (error instanceof RelayDenied && authCodes.has(error.code)) {
            return yield* new AgentError({
              reason: "Unauthorized",
              code: error.code,
              message: `the hub refused this agent's token (${error.code}: ${error.message}); ` +
                "provision the agent again with `connect up --hub URL --api-key KEY`"
            })
          }
          err(`cannot connect to ${state.hubUrl}: ${error.message}`)
          down = hubDown(error)
        }
        const delay = backoff.next()
        err(`reconnecting in ${(delay / 1000).toFixed(1)} s`)
        // A hub that is back is a new hub: if it still fails while starting up, back off from the first step again
        // rather than from where the outage left the delays.
        if ((yield* pause(delay, down ? hubAddress(state.hubUrl) : undefined)) === "hubBack") backoff.reset()
      }
    })

    const fiber = yield* Effect.forkScoped(loop)
    return {
      expose,
      unexpose,
      reach,
      check,
      unreach,
      status,
      connected: Deferred.await(firstConnected),
      loop: fiber
    } satisfies Agent
  })
