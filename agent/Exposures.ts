/**
 * The agent's exposures: local targets published under a service name, kept in the state file and published again
 * on every (re)connect.
 */
import { Effect } from "effect"
import { AgentError, denied } from "./AgentError.ts"
import type * as HubClient from "./HubClient.ts"
import type { Link } from "./Link.ts"
import * as State from "./State.ts"

/** Result of an expose: `pending` when the agent is not connected and will expose it on reconnect. */
export interface Exposed extends State.Exposure {
  readonly pending: boolean
}

/** The exposures of a running agent. */
export interface Exposures {
  /** Publishes `host:port` as `name` (now if connected, else on reconnect) and keeps it in the state file. */
  readonly expose: (name: string, host: string, port: number) => Effect.Effect<Exposed, AgentError | State.StateError>
  /** Withdraws `name` and removes it from the state file. */
  readonly unexpose: (name: string) => Effect.Effect<void, AgentError | State.StateError>
  /** Publishes every stored exposure on a new connection; one the hub refuses is reported and skipped. */
  readonly restore: (client: HubClient.HubClientService) => Effect.Effect<void>
}

/** The exposures of the agent whose state is `state`. */
export const make = (options: {
  readonly state: State.Held
  readonly link: Link
  readonly err: (line: string) => void
}): Exposures => {
  const { link, state } = options

  const expose = (name: string, host: string, port: number) =>
    Effect.gen(function*() {
      const client = link.live()
      let exposed = false
      if (client) {
        exposed = yield* client.expose(name, host, port).pipe(
          Effect.as(true),
          Effect.catchTag("RelayDenied", (e) => Effect.fail(denied(`expose ${name}`, e))),
          // The connection died under us: keep it in the state; it is exposed on reconnect.
          Effect.catchTag("TransportError", () => Effect.succeed(false))
        )
      }
      yield* state.update((s) => State.withExposure(s, { name, host, port }))
      return { name, host, port, pending: !exposed }
    })

  const unexpose = (name: string) =>
    Effect.gen(function*() {
      if (!state.get().exposures.some((e) => e.name === name)) {
        return yield* new AgentError({ reason: "NotFound", message: `this agent does not expose a service named ${name}` })
      }
      const client = link.live()
      // The hub forgets the service with the connection anyway; only a refusal other than "gone" matters.
      if (client) {
        yield* client.unexpose(name).pipe(
          Effect.catchTag("TransportError", () => Effect.void),
          Effect.catchTag("RelayDenied", (e) => (e.code === "ServiceNotFound" ? Effect.void : Effect.fail(denied(`unexpose ${name}`, e))))
        )
      }
      yield* state.update((s) => State.withoutExposure(s, name))
    })

  const restore = (client: HubClient.HubClientService) =>
    Effect.suspend(() =>
      Effect.forEach(
        state.get().exposures,
        (exposure) =>
          client.expose(exposure.name, exposure.host, exposure.port).pipe(
            Effect.catchAll((e) => Effect.sync(() => options.err(`expose ${exposure.name}: ${e.message}`)))
          ),
        { discard: true }
      )
    )

  return { expose, unexpose, restore }
}
