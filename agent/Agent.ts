/**
 * The running agent (`connect up`): keeps one authenticated connection to the hub alive (reconnecting with backoff),
 * restores its exposures after every (re)connect, owns the reach listeners so local ports stay bound while the hub
 * is away, and serves the control socket through which the other `connect` commands act on it. Each concern lives in
 * its own module; this one wires them.
 */
import { Deferred, Duration, Effect, Fiber } from "effect"
import type { Scope } from "effect"
import * as AgentDecider from "../core/AgentDecider.ts"
import { type AgentError, requireState } from "./AgentError.ts"
import type * as Backoff from "./Backoff.ts"
import type * as Check from "./Check.ts"
import * as Control from "./Control.ts"
import * as Exposures from "./Exposures.ts"
import type * as HubClient from "./HubClient.ts"
import * as Link from "./Link.ts"
import * as PidFile from "./PidFile.ts"
import * as Reaches from "./Reaches.ts"
import * as Reconnect from "./Reconnect.ts"
import * as State from "./State.ts"
import * as Waiting from "./Waiting.ts"

export type { Exposed } from "./Exposures.ts"
export type { Reached } from "./Reaches.ts"

/** Options of `make`. */
export interface AgentOptions {
  /** CONNECT_HOME of this agent. */
  readonly home: string
  /** Where user-facing lines go (default stdout), with what happened (`event.action` of a JSON log line) when known. */
  readonly out?: (line: string, action?: string) => void
  /** Where warnings and connection trouble go (default stderr). */
  readonly err?: (line: string, action?: string) => void
  /** Reconnect backoff (default: first retry ≤ 500 ms, cap 30 s). */
  readonly backoff?: Backoff.BackoffOptions
  /** Agent software version sent in `Hello`. */
  readonly agentVersion?: string
  /** How long a local connection waits for the hub (default `Waiting.PENDING_MS`). */
  readonly pending?: Duration.DurationInput
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

/** A running agent. */
export interface Agent {
  /** Publishes `host:port` as `name` (now if connected, else on reconnect) and keeps it in the state file. */
  readonly expose: Exposures.Exposures["expose"]
  /** Withdraws `name` and removes it from the state file. */
  readonly unexpose: Exposures.Exposures["unexpose"]
  /** Binds (or returns) the local listener of service `name`, checking with the hub first when connected. */
  readonly reach: Reaches.Reaches["reach"]
  /** Checks service `name` from the exposing agent's side (see `HubClient.check`); needs the hub connection. */
  readonly check: (name: string) => Effect.Effect<Check.CheckOutput, AgentError>
  /** Closes the listener of `name` (open connections keep flowing) and forgets its port. */
  readonly unreach: Reaches.Reaches["unreach"]
  /** The agent as `connect status` shows it. */
  readonly status: () => Status
  /** Completes at the first successful connection. */
  readonly connected: Effect.Effect<void>
  /** The connection loop; fails only when the hub refuses the token or the state file goes away. */
  readonly loop: Fiber.Fiber<never, AgentError | State.StateError>
}

/** The lines a new connection is announced with: who we are, and a warning when the token expires soon. */
const greet = (
  hubUrl: string,
  welcome: HubClient.HubClientService["welcome"],
  out: (line: string, action?: string) => void,
  err: (line: string, action?: string) => void
) => {
  out(`connected to ${hubUrl} as ${welcome.agentId} (workspace ${welcome.workspaceId})`, "agent-connected")
  const expires = welcome.tokenExpiresAt
  // The hub sends the expiry only when it is near, by this same rule.
  if (expires !== undefined && AgentDecider.expiresSoon(new Date(expires), new Date())) {
    const days = Math.max(0, Math.floor((Date.parse(expires) - Date.now()) / 86_400_000))
    err(`warning: the agent token expires at ${expires} (in ${days} day${days === 1 ? "" : "s"}); run \`connect up --rotate-token\``, "agent-token-expiring")
  }
}

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
    const state = State.hold(home, yield* requireState(home))
    const link = Link.make(err)
    const waiting = Waiting.make({ link, err, pending: options.pending })
    const reaches = Reaches.make({ state, link, waiting, err })
    const exposures = Exposures.make({ state, link, err })
    const firstConnected = yield* Deferred.make<void>()
    // Operations that change the state file or the hub's view of this agent run one at a time, and never between a
    // new connection and the restore of its exposures.
    const serialized = (yield* Effect.makeSemaphore(1)).withPermits(1)

    const agent = {
      expose: (name: string, host: string, port: number) => serialized(exposures.expose(name, host, port)),
      unexpose: (name: string) => serialized(exposures.unexpose(name)),
      reach: (name: string, port?: number) => serialized(reaches.reach(name, port)),
      check: reaches.check,
      unreach: (name: string) => serialized(reaches.unreach(name)),
      status: (): Status =>
        statusOf(state.get(), { connected: link.live() !== undefined, pid: process.pid, bound: reaches.bound })
    }

    // The control socket first: it is what detects a second agent on the same CONNECT_HOME.
    yield* Control.serve(files.socket, Control.handler(agent))
    yield* PidFile.hold(files.pid)
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        reaches.close()
        waiting.close()
      })
    )
    yield* reaches.restore

    const loop = yield* Effect.forkScoped(Reconnect.run({
      home,
      state,
      link,
      err,
      backoff: options.backoff,
      agentVersion: options.agentVersion ?? "dev",
      connected: (client) =>
        Effect.gen(function*() {
          yield* serialized(
            Effect.gen(function*() {
              link.set(client)
              greet(state.get().hubUrl, client.welcome, out, err)
              yield* exposures.restore(client)
            })
          )
          yield* Effect.forkScoped(waiting.flush(client))
          yield* Deferred.succeed(firstConnected, undefined)
        })
    }))
    return { ...agent, connected: Deferred.await(firstConnected), loop } satisfies Agent
  })
