/**
 * The agent's connection loop: one session with the hub at a time (state re-read, dial, authenticate, run until the
 * connection closes), then a backoff wait that a waiting local connection or a hub accepting TCP again cuts short.
 * Only a refused token or a state file gone stops it.
 */
import * as Net from "node:net"
import { Clock, Deferred, Effect } from "effect"
import type { Scope } from "effect"
import { CLOSE_CODES, type TransportError } from "../core/Transport.ts"
import { AgentError, requireState } from "./AgentError.ts"
import * as Backoff from "./Backoff.ts"
import * as Dial from "./Dial.ts"
import type * as HubClient from "./HubClient.ts"
import type { Link } from "./Link.ts"
import type * as State from "./State.ts"

/** Mean interval between TCP probes of a hub that is down (see `pause`). */
export const PROBE_INTERVAL_MS = 1_000

// Errors of a TCP connect that mean nothing listens (or the host is gone), as opposed to a hub that answers badly.
const DOWN_CODES: ReadonlySet<string> = new Set(["ECONNREFUSED", "ECONNRESET", "EHOSTUNREACH", "ENETUNREACH", "EHOSTDOWN", "ENOTFOUND", "EAI_AGAIN"])

const AUTH_CODES: ReadonlySet<string> = new Set(["Unauthorized", "TokenExpired", "TokenRevoked"])

/** Options of `run`. */
export interface ReconnectOptions {
  /** CONNECT_HOME of the agent, whose state is re-read before every attempt. */
  readonly home: string
  /** The agent's state, replaced by what each attempt reads. */
  readonly state: State.Held
  /** Cleared when a session ends; its wake hook is set while the loop waits. */
  readonly link: Link
  /** Where connection trouble goes. */
  readonly err: (line: string) => void
  /** Reconnect backoff (default: first retry ≤ 500 ms, cap 30 s). */
  readonly backoff?: Backoff.BackoffOptions | undefined
  /** Agent software version sent in `Hello`. */
  readonly agentVersion: string
  /** Runs once a session is authenticated, in the session's scope (restores the exposures, sets the link). */
  readonly connected: (client: HubClient.HubClientService) => Effect.Effect<void, never, Scope.Scope>
}

const hubAddress = (hubUrl: string) => {
  const url = new URL(hubUrl)
  return { host: url.hostname.replace(/^\[|\]$/g, ""), port: Number(url.port || (url.protocol === "https:" ? 443 : 80)) }
}

/** A failure to even open TCP to the hub: its process (or machine) is down, not refusing us. */
const hubDown = (error: TransportError): boolean => {
  const cause = (error as { cause?: { code?: unknown } }).cause
  return error.reason === "Open" && typeof cause?.code === "string" && DOWN_CODES.has(cause.code)
}

/** Whether a bare TCP connect to `address` succeeds. */
const accepts = (address: { readonly host: string; readonly port: number }) =>
  Effect.async<boolean>((resume) => {
    const socket = Net.connect({ host: address.host, port: address.port })
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed(true))
    })
    socket.once("error", () => {
      socket.destroy()
      resume(Effect.succeed(false))
    })
    return Effect.sync(() => socket.destroy())
  })

/** Probes `address` about every `PROBE_INTERVAL_MS` (jittered) until it accepts TCP. */
const untilAccepting = (address: { readonly host: string; readonly port: number }, err: (line: string) => void) =>
  Effect.gen(function*() {
    while (true) {
      yield* Effect.sleep(PROBE_INTERVAL_MS / 2 + Math.random() * PROBE_INTERVAL_MS)
      if (yield* accepts(address)) return err("the hub accepts connections again; reconnecting now")
    }
  })

/**
 * Waits `delay` ms, or less: a local connection waiting on a reach port cuts it short (`link.waiting`), and so does
 * the hub's port accepting TCP again when `probe` is given. Probing is a bare TCP connect every ~1 s (jittered), far
 * cheaper for a hub than a WebSocket handshake with a token check, and only done while the hub was *down* (refused
 * or dropped the connection), so a restarted hub gets its agents back within about a second instead of after a
 * backoff that grew while it was away; a hub that is up but failing keeps the full backoff.
 */
const pause = (
  link: Link,
  err: (line: string) => void,
  delay: number,
  probe: { readonly host: string; readonly port: number } | undefined
) =>
  Effect.gen(function*() {
    const woken = yield* Deferred.make<void>()
    link.onWake(() => Deferred.unsafeDone(woken, Effect.void))
    return yield* Effect.raceAll([
      Effect.as(Effect.sleep(delay), "elapsed" as const),
      Effect.as(Deferred.await(woken), "woken" as const),
      ...(probe === undefined ? [] : [Effect.as(untilAccepting(probe, err), "hubBack" as const)])
    ])
  }).pipe(Effect.ensuring(Effect.sync(() => link.onWake(undefined))))

/** The connection loop; fails only when the hub refuses the token or the state file goes away. */
export const run = (options: ReconnectOptions): Effect.Effect<never, AgentError | State.StateError> => {
  const { err, link, state } = options

  const session = Effect.scoped(
    Effect.gen(function*() {
      // Re-read on every attempt: `connect up --rotate-token` may have stored a new token meanwhile.
      state.set(yield* requireState(options.home))
      const client = yield* Dial.dial(state.get(), options.agentVersion)
      const since = yield* Clock.currentTimeMillis
      yield* options.connected(client)
      const info = yield* client.closed
      return { info, since }
    }).pipe(Effect.ensuring(Effect.sync(() => link.set(undefined))))
  )

  return Effect.gen(function*() {
    const backoff = Backoff.make(options.backoff)
    while (true) {
      // Whether the hub looked down (gone, not refusing us): then probing its port is worth it.
      const down = yield* session.pipe(
        Effect.flatMap(({ info, since }) =>
          Effect.map(Clock.currentTimeMillis, (now) => {
            if (now - since >= Backoff.STABLE_AFTER_MS) backoff.reset()
            err(`disconnected from the hub (${info.code}${info.reason === "" ? "" : ` ${info.reason}`})`)
            // Vanished, going away or silent: the hub is probably restarting. Any other close is its decision.
            return info.code === 1006 || info.code === CLOSE_CODES.GoingAway || info.code === CLOSE_CODES.Timeout
          })
        ),
        Effect.catchTags({
          RelayDenied: (error) =>
            AUTH_CODES.has(error.code)
              ? Effect.fail(
                new AgentError({
                  reason: "Unauthorized",
                  code: error.code,
                  message: `the hub refused this agent's token (${error.code}: ${error.message}); ` +
                    "provision the agent again with `connect up --hub URL --api-key KEY`"
                })
              )
              : Effect.sync(() => {
                err(`cannot connect to ${state.get().hubUrl}: ${error.message}`)
                return false
              }),
          TransportError: (error) =>
            Effect.sync(() => {
              err(`cannot connect to ${state.get().hubUrl}: ${error.message}`)
              return hubDown(error)
            })
        })
      )
      const delay = backoff.next()
      err(`reconnecting in ${(delay / 1000).toFixed(1)} s`)
      // A hub that is back is a new hub: if it still fails while starting up, back off from the first step again
      // rather than from where the outage left the delays.
      if ((yield* pause(link, err, delay, down ? hubAddress(state.get().hubUrl) : undefined)) === "hubBack") backoff.reset()
    }
  })
}
