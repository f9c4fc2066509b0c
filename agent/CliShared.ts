/**
 * What the agent's commands share (agent/Cli.ts, UpCli.ts, TunnelCli.ts): the launcher, output, common options and
 * argument parsers, and talking to the running agent over its control socket (or running one in the foreground).
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import { fileURLToPath } from "node:url"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import { Clock, Effect, Either, Fiber, Option, Schema } from "effect"
import * as AgentDecider from "../core/AgentDecider.ts"
import { ServiceName } from "../core/Events.ts"
import * as OpsLog from "../core/OpsLog.ts"
import * as Scrub from "../core/Scrub.ts"
import * as Agent from "./Agent.ts"
import { AgentError, requireState } from "./AgentError.ts"
import * as Control from "./Control.ts"
import * as HubApi from "./HubApi.ts"
import * as State from "./State.ts"
import * as Trust from "./Trust.ts"

/** The `connect` launcher (bin/connect), which runs this CLI under node with its malloc and V8 tuning. */
export const launcher = fileURLToPath(new URL("../bin/connect", import.meta.url))

export const version = (JSON.parse(Fs.readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }).version

/** Time `connect up --detach` waits for the background agent's first connection. */
export const DETACH_WAIT_MS = 30_000

export const out = (line: string) => Effect.sync(() => console.log(line))

export const isName = Schema.is(ServiceName)

export const serviceName = (what: string) => (value: string) =>
  isName(value)
    ? Effect.succeed(value)
    : Effect.fail(HelpDoc.p(`${what} '${value}' is not a service name: a letter or digit, then up to 62 letters, digits, '.', '_' or '-'`))

export const json = Options.boolean("json").pipe(Options.withDescription("Print the result as JSON."))

export const portNumber = (flag: string, min: number) =>
  Options.integer(flag).pipe(
    Options.filterMap(
      (n) => (Number.isInteger(n) && n >= min && n <= 65535 ? Option.some(n) : Option.none()),
      `--${flag} must be a whole number from ${min} to 65535`
    )
  )

/** `HOST:PORT`, `[IPv6]:PORT` or a bare `PORT` (on localhost). */
export const parseTarget = (value: string): Option.Option<{ readonly host: string; readonly port: number }> => {
  const match = /^(?:(\[[0-9A-Fa-f:.]+\]|[^:\s]+):)?(\d{1,5})$/.exec(value.trim())
  if (!match) return Option.none()
  const port = Number(match[2])
  if (port < 1 || port > 65535) return Option.none()
  const host = match[1] === undefined ? "localhost" : match[1].replace(/^\[|\]$/g, "")
  return Option.some({ host, port })
}

/** The running agent's status, or `None` when no agent answers on the control socket. */
export const runningAgent = (home: string) =>
  Control.request(State.paths(home).socket, { op: "status" }, "5 seconds").pipe(
    Effect.map((status) => Option.some(status as Agent.Status)),
    Effect.catchIf((e) => e.reason === "NotRunning", () => Effect.succeedNone)
  )

/** Sends `request` to the running agent: `Some(result)`, or `None` when none runs. */
export const ask = (home: string, request: Control.Request) =>
  Control.request(State.paths(home).socket, request).pipe(
    Effect.map(Option.some),
    Effect.catchIf((e) => e.reason === "NotRunning", () => Effect.succeedNone)
  )

/**
 * Runs the agent in this process until Ctrl-C / SIGTERM, or until the hub refuses its token. `initial` runs once
 * after the first connection (or after 15 s without one) — the `expose`/`reach` that started this agent.
 */
export const runForeground = <E = never>(
  home: string,
  initial?: (agent: Agent.Agent) => Effect.Effect<void, E>,
  log: OpsLog.Options = { format: "text", level: "info", service: "connect-agent" }
) =>
  Effect.scoped(
    Effect.gen(function*() {
      const state = yield* requireState(home)
      yield* HubApi.checkHubUrl(state.hubUrl)
      // Its own token is a secret this process knows: no line it writes may hold it, whatever its shape.
      Scrub.remember(state.token)
      const agent = yield* Agent.make({ home, agentVersion: version, ...OpsLog.lines(log) })
      if (initial) {
        yield* agent.connected.pipe(Effect.timeout("15 seconds"), Effect.ignore)
        yield* initial(agent)
      }
      return yield* Fiber.join(agent.loop)
    })
  ).pipe(Trust.provide(), Effect.provide(OpsLog.layer(log)))

export const reachLine = (name: string, port: number) => `${name} → 127.0.0.1:${port}`

export const exposeLine = (e: Agent.Exposed) =>
  e.pending
    ? `${e.name} → ${e.host}:${e.port} (not connected to the hub: exposed when the agent reconnects)`
    : `exposed ${e.name} → ${e.host}:${e.port}`

/** Starts `connect up` in the background (output to agent.log) and waits for its first connection. */
export const detach = (home: string, logArgs: ReadonlyArray<string> = []) =>
  Effect.gen(function*() {
    const files = State.paths(home)
    const log = Fs.openSync(files.log, "a", 0o600)
    // Through the launcher, with this node: the background agent relays, so it gets the launcher's tuning.
    const child = ChildProcess.spawn(launcher, ["up", ...logArgs], {
      detached: true,
      stdio: ["ignore", log, log],
      env: { ...process.env, CONNECT_HOME: home, CONNECT_NODE: process.execPath }
    })
    Fs.closeSync(log)
    child.unref()
    let exited: number | null | undefined
    child.once("exit", (code) => (exited = code))
    const deadline = (yield* Clock.currentTimeMillis) + DETACH_WAIT_MS
    while ((yield* Clock.currentTimeMillis) < deadline) {
      yield* Effect.sleep("200 millis")
      if (exited !== undefined) {
        const tail = Fs.readFileSync(files.log, "utf8").trim().split("\n").slice(-5).join("\n")
        return yield* new AgentError({
          reason: "Detach",
          message: `the background agent exited (code ${exited}); last lines of ${files.log}:\n${tail}`
        })
      }
      const status = yield* runningAgent(home).pipe(Effect.orElseSucceed(() => Option.none<Agent.Status>()))
      if (Option.isSome(status) && status.value.connected) {
        return yield* out(
          `agent running in the background (pid ${child.pid}), connected to ${status.value.hub}; log: ${files.log}`
        )
      }
    }
    return yield* new AgentError({
      reason: "Detach",
      message: `the background agent (pid ${child.pid}) did not connect within ${DETACH_WAIT_MS / 1000} s; ` +
        `it keeps retrying — see ${files.log}`
    })
  })

/** `--ttl 15m|12h|7d`: the lifetime of a newly provisioned agent's tokens, checked here by the hub's rule. */
export const ttlOption = Options.text("ttl").pipe(
  Options.mapEffect((value) =>
    Either.match(AgentDecider.parseTtl(value), {
      onLeft: (message) => Effect.fail(ValidationError.invalidValue(HelpDoc.p(message))),
      onRight: () => Effect.succeed(value.trim())
    })
  ),
  Options.optional,
  Options.withDescription(
    "With --api-key: the lifetime of this agent's tokens, from 5m to 30d (e.g. 15m, 12h, 7d); its rotations keep it. " +
      "Default: the hub's (CONNECT_TOKEN_TTL_DAYS, 30 days)."
  )
)
