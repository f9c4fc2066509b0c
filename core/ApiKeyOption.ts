/**
 * `--api-key KEY`, or the CONNECT_API_KEY environment variable, for every command that calls the hub's API with a key:
 * checked for a key's shape before anything is sent, so that a pasted newline, a quote or a truncated key is one line
 * saying so (exit 2), never an HTTP header the client refuses with a stack trace. The key itself is never echoed.
 */
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import { Config, Effect, Redacted } from "effect"
import { looksLikeApiKey } from "./Secrets.ts"

/** Why `key` cannot be an API key, in words that do not repeat it; undefined when it has the shape of one. */
export const apiKeyProblem = (key: string): string | undefined => {
  if (looksLikeApiKey(key) && key.length <= 200) return undefined
  if (/\s/.test(key)) return "the API key holds a space or a line break (pasted with it?): give the key alone"
  return "that is not an API key: expected pc_ and at least 32 letters and digits (as `connect hub apikey create` prints)"
}

/** `--api-key` with the CONNECT_API_KEY fallback, optional, checked; `description` says whose key it is. */
export const apiKeyOption = (description: string) =>
  Options.redacted("api-key").pipe(
    Options.withFallbackConfig(Config.redacted("CONNECT_API_KEY")),
    Options.mapEffect((key) => {
      const problem = apiKeyProblem(Redacted.value(key))
      return problem === undefined ? Effect.succeed(key) : Effect.fail(ValidationError.invalidValue(HelpDoc.p(problem)))
    }),
    Options.optional,
    Options.withDescription(
      `${description} Prefer the CONNECT_API_KEY environment variable: a key given here is visible to other users ` +
        "of this machine in the process list (ps)."
    )
  )
