/**
 * The agent's reach listeners: one local port on 127.0.0.1 per reached service, kept (and kept bound while the hub is
 * away) across reconnects, with a stable port per name in the state file. A connection accepted while the hub is
 * connected becomes a stream at once; one accepted meanwhile waits (see `Waiting`).
 */
import * as Net from "node:net"
import { Effect } from "effect"
import { AgentError, denied } from "./AgentError.ts"
import type * as Check from "./Check.ts"
import type { Link } from "./Link.ts"
import * as State from "./State.ts"
import type { Waiting } from "./Waiting.ts"

/** A bound reach. */
export interface Reached {
  readonly name: string
  readonly port: number
}

/** The reach listeners of a running agent. */
export interface Reaches {
  /** Binds (or returns) the local listener of service `name`, checking with the hub first when connected. */
  readonly reach: (name: string, port?: number) => Effect.Effect<Reached, AgentError | State.StateError>
  /** Closes the listener of `name` (open connections keep flowing) and forgets its port. */
  readonly unreach: (name: string) => Effect.Effect<void, AgentError | State.StateError>
  /** Checks service `name` from the exposing agent's side (see `HubClient.check`); needs the hub connection. */
  readonly check: (name: string) => Effect.Effect<Check.CheckOutput, AgentError>
  /** The port `name` is bound to, if it is. */
  readonly bound: (name: string) => number | undefined
  /** Binds the reaches of the state file (at start); one that cannot be bound is reported and skipped. */
  readonly restore: Effect.Effect<void, State.StateError>
  /** Closes every listener (the agent is stopping). */
  readonly close: () => void
}

/** No listener yet; `state` is the agent's state, whose reach ports are kept up to date. */
export const make = (options: {
  readonly state: State.Held
  readonly link: Link
  readonly waiting: Waiting
  readonly err: (line: string) => void
}): Reaches => {
  const { err, link, state } = options
  const listeners = new Map<string, { readonly server: Net.Server; readonly port: number }>()

  const accept = (name: string) => (socket: Net.Socket) => {
    socket.on("error", () => {})
    const client = link.live()
    if (client) return client.open(name, socket)
    options.waiting.add(name, socket)
  }

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
    const want = State.reachPort(state.get(), name, requested)
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
        port === state.get().reaches[name] ? Effect.void : state.update((s) => State.withReach(s, name, port))
      )
    )
  }

  const unbind = (name: string) => {
    const listener = listeners.get(name)
    listeners.delete(name)
    listener?.server.close()
  }

  const reach = (name: string, port?: number) =>
    Effect.gen(function*() {
      const client = link.live()
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

  const unreach = (name: string) =>
    Effect.gen(function*() {
      if (!listeners.has(name) && state.get().reaches[name] === undefined) {
        return yield* new AgentError({ reason: "NotFound", message: `this agent does not reach a service named ${name}` })
      }
      unbind(name)
      yield* state.update((s) => State.withoutReach(s, name))
    })

  const check = (name: string) =>
    Effect.suspend(() => {
      const client = link.live()
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

  const restore = Effect.suspend(() =>
    Effect.forEach(
      Object.keys(state.get().reaches),
      (name) => bindStable(name).pipe(Effect.catchTag("AgentError", (e) => Effect.sync(() => err(e.message)))),
      { discard: true }
    )
  )

  const close = () => {
    for (const name of [...listeners.keys()]) unbind(name)
  }

  return { reach, unreach, check, bound: (name) => listeners.get(name)?.port, restore, close }
}
