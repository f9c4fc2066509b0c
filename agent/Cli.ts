/**
 * The agent's commands: `connect up` (provision, connect, stay connected; `--detach`, `--rotate-token`),
 * `connect expose/unexpose/reach/unreach/status` (through the running agent's control socket, or an agent started in the
 * foreground when none runs), `connect services` and `connect daemon install`.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import { Effect, Option } from "effect"
import * as Table from "../core/Table.ts"
import * as Agent from "./Agent.ts"
import { requireState } from "./AgentError.ts"
import * as Daemon from "./Daemon.ts"
import * as HubApi from "./HubApi.ts"
import * as ShareCli from "./ShareCli.ts"
import * as LinkCli from "./LinkCli.ts"
import * as State from "./State.ts"
import * as Trust from "./Trust.ts"
import { launcher, out, json, runningAgent, reachLine } from "./CliShared.ts"
import { up } from "./UpCli.ts"
import { expose, reach, unexpose, unreach } from "./TunnelCli.ts"

export { DETACH_WAIT_MS, parseTarget } from "./CliShared.ts"

/** The stored CA as `connect status` shows it (Trust.stored): its file and certificates, or why it cannot be read. */
type StoredCa = Effect.Effect.Success<ReturnType<typeof Trust.stored>>

const caLines = (ca: StoredCa): Array<string> =>
  ca === undefined
    ? []
    : "error" in ca
    ? [`ca:         ${ca.error}`]
    : [`ca:         ${ca.file}`, ...ca.certificates.map((c) => `  ${c.subject} (SHA-256 ${c.sha256})`)]

const statusText = (s: Agent.Status, ca: StoredCa): string =>
  [
    `hub:        ${s.hub}`,
    ...caLines(ca),
    `agent:      ${s.agentId}${s.label === undefined ? "" : ` (${s.label})`}, workspace ${s.workspaceId}`,
    `transport:  ${s.transport}`,
    ...(s.tokenExpiresAt === undefined ? [] : [`token:      expires ${s.tokenExpiresAt}`]),
    `process:    ${s.running ? `running (pid ${s.pid}), ${s.connected ? "connected" : "not connected"}` : "not running"}`,
    "exposures:",
    ...(s.exposures.length === 0 ? ["  (none)"] : s.exposures.map((e) => `  ${e.name} → ${e.host}:${e.port}`)),
    "reaches:",
    ...(s.reaches.length === 0 ? ["  (none)"] : s.reaches.map((r) => `  ${reachLine(r.name, r.port)}${s.running && !r.bound ? " (not bound)" : ""}`))
  ].join("\n")

const status = Command.make("status", { json }, (flags) =>
  Effect.gen(function*() {
    const home = State.home()
    const state = yield* requireState(home)
    const running = yield* runningAgent(home)
    const s: Agent.Status = Option.getOrElse(running, () => Agent.statusOf(state))
    const ca = yield* Trust.stored(state)
    return yield* out(flags.json ? JSON.stringify(ca === undefined ? s : { ...s, caCert: ca }) : statusText(s, ca))
  })).pipe(Command.withDescription("Show the agent: hub, the CA it trusts for the hub (subject and SHA-256 fingerprint), identity, whether it runs and is connected, exposures, reaches."))

const services = Command.make("services", { json }, (flags) =>
  Effect.gen(function*() {
    const home = State.home()
    const state = yield* requireState(home)
    const hubUrl = yield* HubApi.checkHubUrl(state.hubUrl)
    const list = yield* HubApi.services(hubUrl, state.token).pipe(Trust.provide())
    if (flags.json) return yield* out(JSON.stringify({ services: list }))
    if (list.length === 0) return yield* out("no services in this workspace, and none shared with it")
    return yield* out(
      Table.format(
        [
          ["NAME", "STATUS", "AGENT"],
          ...list.map((s) => [
            s.name,
            s.online ? "online" : "offline",
            s.shared
              ? `shared by ${s.shared.workspaceName} (share ${s.shared.shareId})`
              : `${s.agentLabel ?? ""}${s.agentLabel ? " " : ""}(${s.agentId})`
          ])
        ],
        // STATUS as wide as "offline" whether or not a service is.
        { minWidths: [0, "offline".length] }
      )
    )
  })).pipe(Command.withDescription(
    "List the services of this agent's workspace and those other workspaces share with it (marked shared, with the " +
      "owner's name); asks the hub."
  ))

const install = Command.make(
  "install",
  { print: Options.boolean("print").pipe(Options.withDescription("Only print the unit (or plist), write nothing.")) },
  (flags) =>
    Effect.gen(function*() {
      const home = State.home()
      const plan = Daemon.plan(process.platform, { node: process.execPath, script: launcher, home })
      if (flags.print) return yield* Effect.sync(() => process.stdout.write(plan.text))
      const path = yield* Daemon.install(plan.path, plan.text)
      const provisioned = Option.isSome(yield* State.load(home))
      const commands = plan.enable.map((argv) => `  ${argv.join(" ")}`)
      if (!provisioned) {
        // Started now, it would only fail and restart: it has no token yet.
        return yield* out([
          `wrote ${path}`,
          `not started: provision the agent first (CONNECT_HOME=${home} connect up --hub URL --api-key KEY), then:`,
          ...commands
        ].join("\n"))
      }
      if (plan.kind === "launchd") {
        return yield* out([`wrote ${path}`, "load and start it with:", ...commands].join("\n"))
      }
      const enabled = yield* Daemon.enable(plan.enable, Daemon.systemRunner)
      const linger = "keep it running while you are logged out with: loginctl enable-linger $USER"
      return yield* out(
        (enabled.started
          ? [`wrote ${path}`, `enabled and started ${Daemon.UNIT_NAME} (systemctl --user status ${Daemon.UNIT_NAME})`, linger]
          : [`wrote ${path}`, `not started here: ${enabled.why}`, "enable and start it with:", ...enabled.left.map((c) => `  ${c}`), linger])
          .join("\n")
      )
    })
).pipe(
  Command.withDescription(
    `Install the agent as a user service: a systemd user unit (${Daemon.UNIT_NAME}), enabled and started (or the exact ` +
      `systemctl --user lines when systemd cannot be reached), or a launchd agent on macOS (${Daemon.LAUNCHD_LABEL}).`
  )
)

const daemon: Command.Command<"daemon", never, ValidationError.ValidationError, {}> = Command.make("daemon", {}, () =>
  // Bare `connect daemon` shows its usage (exit 2), like bare `connect audit`.
  Effect.fail(ValidationError.helpRequested(daemonCommand.descriptor))).pipe(
    Command.withDescription("Run the agent as a service of your user session.")
  )
const daemonCommand = daemon.pipe(Command.withSubcommands([install]))

/** The agent's subcommands of `connect`. */
export const commands = [
  up,
  expose,
  unexpose,
  reach,
  unreach,
  status,
  services,
  ShareCli.command,
  ShareCli.join,
  daemonCommand,
  LinkCli.command
] as const
