/**
 * The `--log-format` and `--log-level` options of `connect hub` and `connect up` (see OpsLog.ts).
 */
import * as Options from "@effect/cli/Options"
import * as OpsLog from "./OpsLog.ts"

/** `--log-format text|json` (default text). */
export const logFormat = Options.choice("log-format", OpsLog.FORMATS).pipe(
  Options.withDefault("text" as const),
  Options.withDescription(
    "text (default) or json: one JSON object per line with ECS field names (@timestamp, log.level, message, " +
      "event.action, source.ip masked) for log shippers."
  )
)

/** `--log-level debug|info|warn|error|none` (default info). */
export const logLevel = Options.choice("log-level", OpsLog.LEVELS).pipe(
  Options.withDefault("info" as const),
  Options.withDescription(
    "Least severe log line written: debug, info (default), warn, error or none. Start-up lines and a secret's " +
      "one-time display always print."
  )
)

/** Both, as the options of a command. */
export const options = { logFormat, logLevel }

/** The arguments that pass the same options to a child `connect` process. */
export const args = (flags: { readonly logFormat: OpsLog.Format; readonly logLevel: OpsLog.Level }): Array<string> => [
  ...(flags.logFormat === "text" ? [] : ["--log-format", flags.logFormat]),
  ...(flags.logLevel === "info" ? [] : ["--log-level", flags.logLevel])
]
