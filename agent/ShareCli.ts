/**
 * `connect share create|list|revoke` (the owner, through the hub's API with an API key: `--api-key` or
 * `CONNECT_API_KEY`, at `--hub`, default this agent's hub) and `connect join CODE` (an agent of another workspace,
 * with its own token). A share's code is printed once, by `create`; the hub keeps only its SHA-256. Options are
 * checked here first (exit 2, nothing sent).
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import { Effect, Option, Schema } from "effect"
import { ServiceName } from "../core/Events.ts"
import { parseDuration, parseRateLimit } from "../core/ShareDecider.ts"
import * as Table from "../core/Table.ts"
import { requireState } from "./AgentError.ts"
import { hubOption, target, workspaceKeyOption } from "./ApiTarget.ts"
import * as HubApi from "./HubApi.ts"
import * as State from "./State.ts"
import * as Trust from "./Trust.ts"

const out = (line: string) => Effect.sync(() => console.log(line))

const json = Options.boolean("json").pipe(Options.withDescription("Print the result as JSON."))

const invalid = (message: string) => Effect.fail(ValidationError.invalidValue(HelpDoc.p(message)))

const isName = Schema.is(ServiceName)

const create = Command.make(
  "create",
  {
    service: Options.text("service").pipe(
      Options.mapEffect((value) => {
        const names = value.split(",").map((n) => n.trim()).filter((n) => n !== "")
        const bad: string | undefined = names.find((n): boolean => !isName(n))
        if (names.length === 0) return invalid("--service needs at least one service name")
        if (bad !== undefined) {
          return invalid(`--service '${bad.slice(0, 80)}' is not a service name: a letter or digit, then up to 62 letters, digits, '.', '_' or '-'`)
        }
        return Effect.succeed(names)
      }),
      Options.withDescription("The services to share, comma-separated (exposed services of the workspace: see connect services).")
    ),
    expires: Options.text("expires").pipe(
      Options.mapEffect((t) => parseDuration(t) === undefined ? invalid(`--expires ${t.slice(0, 40)}: expected a duration like 30m, 12h or 7d`) : Effect.succeed(t)),
      Options.optional,
      Options.withDescription("Lifetime: 7d (the default), 12h, 30m or 45s. After it every use is refused (expired).")
    ),
    name: Options.text("name").pipe(
      Options.optional,
      Options.withDescription("A name for people, e.g. acme-contractor (shown by connect share list).")
    ),
    rateLimit: Options.text("rate-limit").pipe(
      Options.mapEffect((t) =>
        parseRateLimit(t) === undefined ? invalid(`--rate-limit ${t.slice(0, 40)}: expected a rate like 60/min, 5/s or 1000/h`) : Effect.succeed(t)
      ),
      Options.optional,
      Options.withDescription("Tunnels opened through the share, over every agent that joined it: 60/min, 5/s, 1000/h (default: none).")
    ),
    hub: hubOption,
    apiKey: workspaceKeyOption,
    caCert: Trust.caCertOption,
    json
  },
  (flags) =>
    Effect.gen(function*() {
      const { apiKey, hubUrl } = yield* target(flags, "share commands")
      const created = yield* HubApi.createShare(hubUrl, apiKey, {
        services: flags.service,
        ...Option.match(flags.expires, { onNone: () => ({}), onSome: (expires) => ({ expires }) }),
        ...Option.match(flags.name, { onNone: () => ({}), onSome: (name) => ({ name }) }),
        ...Option.match(flags.rateLimit, { onNone: () => ({}), onSome: (rateLimit) => ({ rateLimit }) })
      })
      if (flags.json) return yield* out(JSON.stringify(created))
      const s = created.share
      return yield* out([
        created.code,
        `share ${s.shareId}${s.name === null ? "" : ` (${s.name})`} of ${s.services.join(", ")}, until ${s.expiresAt}` +
        (s.rateLimit === null ? "" : `, at most ${s.rateLimit} opens`),
        "the code is shown this once (the hub keeps only a hash of it); an agent of another workspace joins with:",
        `  connect join ${created.code.slice(0, 9)}…`
      ].join("\n"))
    })
).pipe(Trust.trusted, Command.withDescription("Share services with other workspaces; prints the share code once."))

const list = Command.make("list", { hub: hubOption, apiKey: workspaceKeyOption, caCert: Trust.caCertOption, json }, (flags) =>
  Effect.gen(function*() {
    const { apiKey, hubUrl } = yield* target(flags, "share commands")
    const shares = yield* HubApi.listShares(hubUrl, apiKey)
    if (flags.json) return yield* out(JSON.stringify({ shares }))
    if (shares.length === 0) return yield* out("no shares in this workspace")
    return yield* out(Table.format([
      ["ID", "NAME", "CODE", "SERVICES", "STATUS", "EXPIRES", "RATE", "JOINED"],
      ...shares.map((s) => [
        s.shareId,
        s.name ?? "-",
        s.codePrefix === null ? "-" : `${s.codePrefix}…`,
        s.services.join(","),
        s.status,
        s.expiresAt,
        s.rateLimit ?? "-",
        String(s.joined)
      ])
    ]))
  })).pipe(Trust.trusted, Command.withDescription("List the workspace's shares, never their codes (those were shown once)."))

const revoke = Command.make(
  "revoke",
  { id: Args.text({ name: "ID" }).pipe(Args.withDescription("The share's id (see connect share list).")), hub: hubOption, apiKey: workspaceKeyOption, caCert: Trust.caCertOption, json },
  (flags) =>
    Effect.gen(function*() {
      const { apiKey, hubUrl } = yield* target(flags, "share commands")
      const revoked = yield* HubApi.revokeShare(hubUrl, apiKey, flags.id)
      if (flags.json) return yield* out(JSON.stringify(revoked))
      return yield* out(
        revoked.revoked
          ? `share ${revoked.shareId} revoked: its tunnels are closed and every use is refused from now on`
          : `share ${revoked.shareId} was already revoked`
      )
    })
).pipe(Trust.trusted, Command.withDescription("Revoke a share at once: tunnels opened through it are closed, every later use refused."))

const share: Command.Command<"share", never, ValidationError.ValidationError, {}> = Command.make("share", {}, () =>
  Effect.fail(ValidationError.helpRequested(command.descriptor))).pipe(
    Command.withDescription("Share services with other workspaces: create, list, revoke (with an API key).")
  )

/** `connect share` with its subcommands. */
export const command = share.pipe(Command.withSubcommands([create, list, revoke]))

/** `connect join CODE`: this agent takes a grant of the services the share names. */
export const join = Command.make(
  "join",
  {
    code: Args.text({ name: "CODE" }).pipe(Args.withDescription("The share code you were given (sh_…).")),
    json
  },
  (flags) =>
    Effect.gen(function*() {
      const home = State.home()
      const state = yield* requireState(home)
      const hubUrl = yield* HubApi.checkHubUrl(state.hubUrl)
      const joined = yield* HubApi.joinShare(hubUrl, state.token, flags.code).pipe(
        // The join may have reached the hub and be recorded after all: joining again is harmless and tells.
        Effect.catchIf((e) => e._tag === "HubApiError" && e.reason === "Timeout", (e) =>
          Effect.fail(
            new HubApi.HubApiError({
              reason: e.reason,
              message: `${e.message}: run \`connect join\` again to know (it answers "already joined" if this one went through)`
            })
          )),
        Trust.provide()
      )
      if (flags.json) return yield* out(JSON.stringify(joined))
      return yield* out([
        `${joined.joined ? "joined" : "already joined"} share ${joined.share.shareId} of workspace ${joined.owner}: ` +
        `${joined.share.services.join(", ")} until ${joined.share.expiresAt}`,
        `reach them with: connect reach ${joined.share.services[0]}`
      ].join("\n"))
    })
).pipe(
  Command.withDescription(
    "Join a share another workspace gave you: this agent can then reach its services (connect reach NAME), which " +
      "connect services lists as shared."
  )
)
