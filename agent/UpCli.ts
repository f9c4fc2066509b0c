/**
 * `connect up`: provision (with an API key) or reuse the stored agent, connect, and stay connected; `--detach` runs it
 * in the background, `--rotate-token` rotates its token first.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { Effect, Option, Redacted } from "effect"
import { apiKeyOption } from "../core/ApiKeyOption.ts"
import * as OpsLogCli from "../core/OpsLogCli.ts"
import * as Scrub from "../core/Scrub.ts"
import * as HubTls from "../transports/HubTls.ts"
import { AgentError, notProvisioned } from "./AgentError.ts"
import * as HubApi from "./HubApi.ts"
import * as State from "./State.ts"
import * as Trust from "./Trust.ts"
import { out, runningAgent, runForeground, detach, ttlOption } from "./CliShared.ts"

export const up = Command.make(
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
        const rotated = yield* HubApi.rotate(state.hubUrl, state.token).pipe(
          // The rotation may have reached the hub and be recorded with a new token this agent never got: the one it
          // holds would then die at the end of the grace period, with nothing said.
          Effect.catchIf((e) => e._tag === "HubApiError" && e.reason === "Timeout", (e) =>
            Effect.fail(
              new HubApi.HubApiError({
                reason: e.reason,
                message: `${e.message}: if the rotation went through, the token this agent holds stays valid for the ` +
                  "grace period only (24 h at most), so run `connect up --rotate-token` again"
              })
            ))
        )
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
