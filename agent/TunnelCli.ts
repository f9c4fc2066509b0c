/**
 * `connect expose/unexpose/reach/unreach`: through the running agent's control socket, or an agent started in the
 * foreground when none runs; `reach NAME --check` without a running agent makes one short connection for the check.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import { Effect, Option } from "effect"
import * as Agent from "./Agent.ts"
import { AgentError, denied, requireState } from "./AgentError.ts"
import { autoName } from "./AutoName.ts"
import * as Check from "./Check.ts"
import * as Control from "./Control.ts"
import * as Dial from "./Dial.ts"
import * as HubApi from "./HubApi.ts"
import * as State from "./State.ts"
import * as Trust from "./Trust.ts"
import { version, out, serviceName, json, portNumber, parseTarget, ask, runForeground, reachLine, exposeLine } from "./CliShared.ts"

export const expose = Command.make(
  "expose",
  {
    target: Args.text({ name: "HOST:PORT" }).pipe(
      Args.mapEffect((value) =>
        Option.match(parseTarget(value), {
          onNone: () => Effect.fail(HelpDoc.p(`'${value}' is not HOST:PORT (e.g. localhost:5432)`)),
          onSome: Effect.succeed
        })
      ),
      Args.withDescription("The local target, e.g. localhost:5432.")
    ),
    name: Options.text("name").pipe(
      Options.mapEffect((value) => Effect.mapError(serviceName("--name")(value), ValidationError.invalidValue)),
      Options.optional,
      Options.withDescription("Service name (default: from the port — 5432 postgres, 6379 redis, 3306 mysql, …).")
    )
  },
  (flags) =>
    Effect.gen(function*() {
      const home = State.home()
      const state = yield* requireState(home)
      const { host, port } = flags.target
      const taken = new Set(state.exposures.filter((e) => e.host !== host || e.port !== port).map((e) => e.name))
      const name = Option.getOrElse(flags.name, () => autoName(port, taken))
      const answer = yield* ask(home, { op: "expose", name, host, port })
      if (Option.isSome(answer)) return yield* out(exposeLine(answer.value as Agent.Exposed))
      yield* out(`no agent is running for ${home}: starting one in the foreground (Ctrl-C stops it)`)
      return yield* runForeground(home, (agent) => Effect.flatMap(agent.expose(name, host, port), (e) => out(exposeLine(e))))
    })
).pipe(Command.withDescription("Publish a local TCP target to the workspace under a name (kept across restarts)."))

export const unexpose = Command.make(
  "unexpose",
  { name: Args.text({ name: "NAME" }).pipe(Args.withDescription("The service to withdraw.")) },
  (flags) =>
    Effect.gen(function*() {
      const home = State.home()
      const state = yield* requireState(home)
      const answer = yield* ask(home, { op: "unexpose", name: flags.name })
      if (Option.isSome(answer)) return yield* out(`unexposed ${flags.name}`)
      if (!state.exposures.some((e) => e.name === flags.name)) {
        return yield* new AgentError({ reason: "NotFound", message: `this agent does not expose a service named ${flags.name}` })
      }
      yield* State.update(home, (s) => State.withoutExposure(s, flags.name))
      return yield* out(`unexposed ${flags.name} (no agent running: removed from ${State.paths(home).state})`)
    })
).pipe(Command.withDescription("Withdraw a service this agent exposes."))

/** `reach NAME --check` without a running agent: one short connection to the hub for the check. */
const checkDirect = (home: string, name: string) =>
  Effect.scoped(
    Effect.gen(function*() {
      const state = yield* requireState(home)
      const hubUrl = yield* HubApi.checkHubUrl(state.hubUrl)
      const client = yield* Dial.dial({ ...state, hubUrl }, version)
      return yield* client.check(name)
    })
  ).pipe(
    Trust.provide(),
    Effect.catchTags({
      RelayDenied: (e) => Effect.fail(denied(`check ${name}`, e)),
      TransportError: (e) => Effect.fail(new AgentError({ reason: "Offline", message: `cannot check ${name}: ${e.message}` }))
    })
  )

/** Prints a check and fails (exit 1) when DNS or TCP failed on the exposing agent's side. */
const printCheck = (output: Check.CheckOutput, asJson: boolean) =>
  Effect.gen(function*() {
    yield* out(asJson ? JSON.stringify(output) : Check.format(output))
    if (!output.ok) {
      return yield* new AgentError({
        reason: "CheckFailed",
        message: `check of ${output.service} failed: ${output.dns.ok ? "TCP" : "DNS"} does not answer on the exposing agent's side`
      })
    }
  })

export const reach = Command.make(
  "reach",
  {
    name: Args.text({ name: "NAME" }).pipe(Args.mapEffect(serviceName("NAME")), Args.withDescription("The service to reach.")),
    port: portNumber("port", 0).pipe(
      Options.optional,
      Options.withDescription("Local port on 127.0.0.1 (default: the one this name had before, else a free one).")
    ),
    check: Options.boolean("check").pipe(
      Options.withDescription(
        "Do not bind a port: check the service from the exposing agent's side (DNS, TCP, TLS, HTTP, latency). " +
          "TLS and HTTP are informational; exit 1 only when DNS or TCP fail."
      )
    ),
    json
  },
  (flags) =>
    Effect.gen(function*() {
      const home = State.home()
      yield* requireState(home)
      if (flags.check) {
        const answer = yield* ask(home, { op: "check", name: flags.name })
        const output = Option.isSome(answer)
          ? (answer.value as Check.CheckOutput)
          : yield* checkDirect(home, flags.name)
        return yield* printCheck(output, flags.json)
      }
      const port = Option.getOrUndefined(flags.port)
      const request: Control.Request = port === undefined
        ? { op: "reach", name: flags.name }
        : { op: "reach", name: flags.name, port }
      const answer = yield* ask(home, request)
      if (Option.isSome(answer)) {
        const reached = answer.value as Agent.Reached
        return yield* out(reachLine(reached.name, reached.port))
      }
      yield* out(`no agent is running for ${home}: starting one in the foreground (Ctrl-C stops it)`)
      return yield* runForeground(home, (agent) =>
        Effect.flatMap(agent.reach(flags.name, port), (r) => out(reachLine(r.name, r.port))))
    })
).pipe(
  Command.withDescription(
    "Bind a local port on 127.0.0.1 that relays every connection to a service of the workspace; the port stays the " +
      "same for this name across restarts."
  )
)

export const unreach = Command.make(
  "unreach",
  { name: Args.text({ name: "NAME" }).pipe(Args.withDescription("The reached service whose local port to close.")) },
  (flags) =>
    Effect.gen(function*() {
      const home = State.home()
      const state = yield* requireState(home)
      const answer = yield* ask(home, { op: "unreach", name: flags.name })
      if (Option.isSome(answer)) return yield* out(`closed the local port of ${flags.name}`)
      if (state.reaches[flags.name] === undefined) {
        return yield* new AgentError({ reason: "NotFound", message: `this agent does not reach a service named ${flags.name}` })
      }
      yield* State.update(home, (s) => State.withoutReach(s, flags.name))
      return yield* out(`forgot the local port of ${flags.name} (no agent running: removed from ${State.paths(home).state})`)
    })
).pipe(Command.withDescription("Close a reach's local port and forget it (connections already open keep flowing)."))
