/**
 * The agent's commands: `connect up` (provision, connect, stay connected; `--detach`, `--rotate-token`),
 * `connect expose/unexpose/reach/unreach/status` (through the running agent's control socket, or an agent started in the
 * foreground when none runs), `connect services` and `connect daemon install`.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import { fileURLToPath } from "node:url"
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import { Clock, Effect, Either, Fiber, Option, Redacted, Schema } from "effect"
import * as AgentDecider from "../core/AgentDecider.ts"
import { apiKeyOption } from "../core/ApiKeyOption.ts"
import { ServiceName } from "../core/Events.ts"
import * as OpsLog from "../core/OpsLog.ts"
import * as OpsLogCli from "../core/OpsLogCli.ts"
import * as Scrub from "../core/Scrub.ts"
import * as Table from "../core/Table.ts"
import * as HubTls from "../transports/HubTls.ts"
import * as Agent from "./Agent.ts"
import { AgentError, denied, notProvisioned, requireState } from "./AgentError.ts"
import { autoName } from "./AutoName.ts"
import * as Check from "./Check.ts"
import * as Control from "./Control.ts"
import * as Daemon from "./Daemon.ts"
import * as Dial from "./Dial.ts"
import * as HubApi from "./HubApi.ts"
import * as ShareCli from "./ShareCli.ts"
import * as LinkCli from "./LinkCli.ts"
import * as State from "./State.ts"
import * as Trust from "./Trust.ts"

/** The `connect` launcher (bin/connect), which runs this CLI under node with its malloc and V8 tuning. */
const launcher = fileURLToPath(new URL("../bin/connect", import.meta.url))

const version = (JSON.parse(Fs.readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }).version

/** Time `connect up --detach` waits for the background agent's first connection. */
export const DETACH_WAIT_MS = 30_000

const out = (line: string) => Effect.sync(() => console.log(line))

const isName = Schema.is(ServiceName)

const serviceName = (what: string) => (value: string) =>
  isName(value)
    ? Effect.succeed(value)
    : Effect.fail(HelpDoc.p(`${what} '${value}' is not a service name: a letter or digit, then up to 62 letters, digits, '.', '_' or '-'`))

const json = Options.boolean("json").pipe(Options.withDescription("Print the result as JSON."))

const portNumber = (flag: string, min: number) =>
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
const runningAgent = (home: string) =>
  Control.request(State.paths(home).socket, { op: "status" }, "5 seconds").pipe(
    Effect.map((status) => Option.some(status as Agent.Status)),
    Effect.catchIf((e) => e.reason === "NotRunning", () => Effect.succeedNone)
  )

/** Sends `request` to the running agent: `Some(result)`, or `None` when none runs. */
const ask = (home: string, request: Control.Request) =>
  Control.request(State.paths(home).socket, request).pipe(
    Effect.map(Option.some),
    Effect.catchIf((e) => e.reason === "NotRunning", () => Effect.succeedNone)
  )

/**
 * Runs the agent in this process until Ctrl-C / SIGTERM, or until the hub refuses its token. `initial` runs once
 * after the first connection (or after 15 s without one) — the `expose`/`reach` that started this agent.
 */
const runForeground = <E = never>(
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

const reachLine = (name: string, port: number) => `${name} → 127.0.0.1:${port}`

const exposeLine = (e: Agent.Exposed) =>
  e.pending
    ? `${e.name} → ${e.host}:${e.port} (not connected to the hub: exposed when the agent reconnects)`
    : `exposed ${e.name} → ${e.host}:${e.port}`

/** Starts `connect up` in the background (output to agent.log) and waits for its first connection. */
const detach = (home: string, logArgs: ReadonlyArray<string> = []) =>
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
const ttlOption = Options.text("ttl").pipe(
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

const up = Command.make(
  "up",
  {
    hub: Options.text("hub").pipe(
      Options.optional,
      Options.withDescription(
        "Hub URL (https://host[:port]; CONNECT_HUB_URL if not given); needed the first time, stored afterwards."
      )
    ),
    apiKey: apiKeyOption("API key (pc_…) to provision this agent with; needed the first time only."),
    label: Options.text("label").pipe(Options.optional, Options.withDescription("Name of this agent in the audit log.")),
    transport: Options.choice("transport", ["ws", "msgpack", "tcp"]).pipe(
      Options.optional,
      Options.withDescription(
        "Transport plugin: msgpack (the default: binary WebSocket frames, payload bytes as they are), tcp (the same " +
          "frames straight on the TCP/TLS connection after an HTTP upgrade: less CPU per message; needs no WebSocket-only " +
          "proxy in between) or ws (JSON text frames, payload base64: readable in a debugger, 2–3× slower); stored."
      )
    ),
    rotateToken: Options.boolean("rotate-token").pipe(
      Options.withDescription("Get a new agent token; the old one stays valid for the hub's grace period (24 h).")
    ),
    detach: Options.boolean("detach").pipe(
      Options.withDescription("Run in the background (log in CONNECT_HOME/agent.log) once connected.")
    ),
    caCert: Trust.caCertOption,
    ttl: ttlOption,
    ...OpsLogCli.options
  },
  (flags) =>
    Effect.gen(function*() {
      const home = State.home()
      const files = State.paths(home)
      let state = Option.getOrUndefined(yield* State.load(home))
      // CONNECT_HUB_URL stands for --hub on a first start only: afterwards the stored hub is this agent's.
      const hubFlag = Option.getOrUndefined(flags.hub) ??
        (state === undefined && process.env.CONNECT_HUB_URL ? process.env.CONNECT_HUB_URL : undefined)
      const hubUrl = yield* HubApi.checkHubUrl(hubFlag ?? state?.hubUrl ?? "")
        .pipe(
          Effect.catchAll((e): Effect.Effect<never, HubApi.HubUrlError | AgentError> =>
            hubFlag === undefined && state === undefined ? Effect.fail(notProvisioned(home)) : Effect.fail(e)
          )
        )
      const running = yield* runningAgent(home)
      const label = Option.getOrUndefined(flags.label)
      const transport = Option.getOrUndefined(flags.transport)
      // The CA given now (--ca-cert or CONNECT_CA_CERT; Trust.trusted has read and checked it), or one an older build
      // stored as the path the user gave: copied into the agent's home for later starts, where it cannot move away.
      const ca = Trust.chosen(flags.caCert, undefined)
      const trust = yield* HubTls.Trust
      const caPem = ca !== undefined || (state?.caCert !== undefined && state.caCert !== files.ca) ? trust.ca?.pem : undefined

      // A lifetime is chosen when an agent is provisioned (its rotations keep it), never changed on a running identity.
      const ttl = Option.getOrUndefined(flags.ttl)
      if (ttl !== undefined && (Option.isNone(flags.apiKey) || (state !== undefined && state.hubUrl === hubUrl))) {
        return yield* new AgentError({
          reason: "NotProvisioned",
          message: state !== undefined && state.hubUrl === hubUrl
            ? `--ttl applies when an agent is provisioned, and this one is (${state.agentId}); provision another in a ` +
              "new CONNECT_HOME with --hub, --api-key and --ttl"
            : "--ttl sets the token lifetime when the agent is provisioned: give --api-key with it"
        })
      }
      if (state === undefined || state.hubUrl !== hubUrl) {
        if (Option.isNone(flags.apiKey)) {
          return yield* state === undefined
            ? Effect.fail(notProvisioned(home))
            : new AgentError({
              reason: "NotProvisioned",
              message: `this agent is registered with ${state.hubUrl}; pass --api-key to register it with ${hubUrl}`
            })
        }
        if (Option.isSome(running)) {
          return yield* new AgentError({
            reason: "AlreadyRunning",
            message: `an agent is running for ${home} (pid ${running.value.pid}); stop it before registering with another hub`
          })
        }
        const apiKey = Redacted.value(flags.apiKey.value as Redacted.Redacted<string>)
        Scrub.remember(apiKey)
        const provisioned = yield* HubApi.provision(hubUrl, apiKey, label ?? state?.label, ttl)
        const caCert = caPem === undefined ? state?.caCert : yield* State.saveCaCert(home, caPem)
        state = {
          hubUrl,
          agentId: provisioned.agentId,
          workspaceId: provisioned.workspaceId,
          token: provisioned.token,
          ...(provisioned.expiresAt === undefined ? {} : { tokenExpiresAt: provisioned.expiresAt }),
          transport: transport ?? state?.transport ?? "msgpack",
          ...(caCert === undefined ? {} : { caCert }),
          ...((label ?? state?.label) === undefined ? {} : { label: label ?? state?.label }),
          exposures: state?.exposures ?? [],
          reaches: state?.reaches ?? {}
        }
        yield* State.save(home, state)
        yield* out(
          `provisioned agent ${provisioned.agentId} in workspace ${provisioned.workspaceId}; its token (valid until ` +
            `${provisioned.expiresAt}) is stored in ${files.state} (mode 0600) and is not shown again`
        )
      } else if (
        (label !== undefined && label !== state.label) || (transport !== undefined && transport !== state.transport) ||
        caPem !== undefined
      ) {
        const caCert = caPem === undefined ? undefined : yield* State.saveCaCert(home, caPem)
        state = yield* State.update(home, (s) => ({
          ...s,
          ...(label === undefined ? {} : { label }),
          ...(transport === undefined ? {} : { transport }),
          ...(caCert === undefined ? {} : { caCert })
        }))
      }

      if (flags.rotateToken) {
        const rotated = yield* HubApi.rotate(state.hubUrl, state.token)
        state = yield* State.update(home, (s) => ({
          ...s,
          token: rotated.token,
          ...(rotated.expiresAt === undefined ? {} : { tokenExpiresAt: rotated.expiresAt })
        }))
        yield* out(
          `rotated the agent token: the new one${rotated.expiresAt === undefined ? "" : ` expires ${rotated.expiresAt}`}, ` +
            `the old one stays valid${rotated.oldValidUntil === undefined ? " for the grace period" : ` until ${rotated.oldValidUntil}`}; ` +
            `stored in ${files.state}`
        )
      }

      if (Option.isSome(running)) {
        if (flags.rotateToken) {
          return yield* out(`the running agent (pid ${running.value.pid}) uses the new token from its next reconnect`)
        }
        return yield* new AgentError({
          reason: "AlreadyRunning",
          message: `an agent is already running for ${home} (pid ${running.value.pid}); \`connect status\` shows it`
        })
      }
      if (flags.detach) return yield* detach(home, OpsLogCli.args(flags))
      return yield* runForeground(home, undefined, { format: flags.logFormat, level: flags.logLevel, service: "connect-agent" })
    })
).pipe(
  Trust.trusted,
  Command.withDescription(
    "Start the agent: the first time with --hub and --api-key (provisions it and stores its token in " +
      "CONNECT_HOME/agent.json, mode 0600), afterwards with no flags. Stays connected, reconnecting with backoff, " +
      "and restores its exposures and reaches. Stop it with Ctrl-C or SIGTERM."
  )
)

const expose = Command.make(
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

const unexpose = Command.make(
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

const reach = Command.make(
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

const unreach = Command.make(
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
