/**
 * The hub and the API key of a command that calls the hub's API for a workspace (`connect share …`, `connect link …`):
 * `--hub` (default: the hub this agent is registered with) and `--api-key` (or CONNECT_API_KEY). A missing one is one
 * line saying what to do.
 */
import * as Options from "@effect/cli/Options"
import { Effect, Option, Redacted } from "effect"
import { apiKeyOption } from "../core/ApiKeyOption.ts"
import { AgentError } from "./AgentError.ts"
import * as HubApi from "./HubApi.ts"
import * as State from "./State.ts"

/** `--hub URL`. */
export const hubOption = Options.text("hub").pipe(
  Options.optional,
  Options.withDescription("Hub URL (https://host[:port]); default: the hub this agent is registered with.")
)

/** `--api-key KEY` of the workspace the command acts for. */
export const workspaceKeyOption = apiKeyOption("API key of the workspace (pc_…).")

/** The hub URL (checked) and the API key; `commands` names the commands in the message when the key is missing. */
export const target = (
  flags: { readonly hub: Option.Option<string>; readonly apiKey: Option.Option<Redacted.Redacted<string>> },
  commands: string
) =>
  Effect.gen(function*() {
    const given = Option.getOrUndefined(flags.hub)
    const state = given === undefined ? Option.getOrUndefined(yield* State.load(State.home())) : undefined
    const raw = given ?? state?.hubUrl
    if (raw === undefined) {
      return yield* new AgentError({ reason: "NotProvisioned", message: "which hub? pass --hub https://host[:port]" })
    }
    const hubUrl = yield* HubApi.checkHubUrl(raw)
    if (Option.isNone(flags.apiKey)) {
      return yield* new AgentError({
        reason: "NotProvisioned",
        message: `${commands} need an API key of the workspace: set CONNECT_API_KEY (or --api-key pc_…)`
      })
    }
    return { hubUrl, apiKey: Redacted.value(flags.apiKey.value) }
  })
