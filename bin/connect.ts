/**
 * The `connect` command line: the root command, its subcommands, and how failures become exit codes
 * (0 ok or stopped by a signal, 1 runtime failure with a one-line reason, 2 bad usage).
 */
import * as Fs from "node:fs"
import * as CliConfig from "@effect/cli/CliConfig"
import * as Command from "@effect/cli/Command"
import * as Descriptor from "@effect/cli/CommandDescriptor"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Usage from "@effect/cli/Usage"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { defaultTeardown, type Teardown } from "@effect/platform/Runtime"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as HashSet from "effect/HashSet"
import * as Option from "effect/Option"
import * as AgentCli from "../agent/Cli.ts"
import * as AuditAccessCli from "../audit/AccessCli.ts"
import * as AuditApi from "../audit/AuditApi.ts"
import * as AuditCli from "../audit/Cli.ts"
import * as AuditCheckpointCli from "../audit/CheckpointCli.ts"
import * as AuditExportCli from "../audit/ExportCli.ts"
import * as AuditQueryCli from "../audit/QueryCli.ts"
import * as StatsProjection from "../audit/StatsProjection.ts"
import * as HubCli from "../hub/Cli.ts"
import { messageOf } from "../core/ErrorMessage.ts"
import { scrub } from "../core/Scrub.ts"
import * as Help from "./Help.ts"

// `connect audit [filters]` lists the log, `connect audit verify` checks its chain, `connect audit export` ships it;
// all on the hub's log and database.
const auditCommand = AuditQueryCli.command(HubCli.logLayer).pipe(
  Command.withSubcommands([AuditCli.verifyCommand("verify", HubCli.logLayer, HubCli.keyStoreLayer),
    AuditCheckpointCli.pubkeyCommand(HubCli.keyStoreLayer),
    AuditCheckpointCli.rotateKeyCommand(HubCli.logLayer, HubCli.keyStoreLayer),
    AuditExportCli.command(HubCli.logLayer),
    AuditAccessCli.command(HubCli.logLayer)])
)

// `connect hub verify-log` is audit's verify command on the hub's log, built here: hub/ and audit/ never import each other.
// The hub follows audit's rollups (`connect audit --stats`) while it runs.
const hubCommand = HubCli.command(
  AuditCli.verifyCommand("verify-log", HubCli.logLayer, HubCli.keyStoreLayer),
  [StatsProjection.projection],
  // The hub serves audit's API handlers (GET /v1/audit/events).
  AuditApi.layer
)

const subcommands = [hubCommand, auditCommand, ...AgentCli.commands] as const

const root: Command.Command<"connect", never, ValidationError.ValidationError, {}> = Command.make("connect", {}, () =>
  // Bare `connect` shows the help, subcommands included.
  Effect.fail(ValidationError.helpRequested(command.descriptor))).pipe(
    Command.withDescription(
      "connect: a self-hosted hub for reaching private TCP services, with every action on an append-only Postgres event log."
    )
  )

/** The root `connect` command with its subcommands. */
export const command = root.pipe(Command.withSubcommands(subcommands))

const version = (JSON.parse(Fs.readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string })
  .version

const cli = Command.run(command, { name: "connect", version })

/** A failure already explained to the user; only the exit code is left to apply. */
class ExitCode extends Data.TaggedError("ExitCode")<{ readonly code: number }> {}

/** The short help of `connect`: every command once, one line each. */
const rootHelp = (): string =>
  [
    `connect ${version}: reach private TCP services through a self-hosted hub; every action on an append-only event log.`,
    "",
    "Usage: connect <command> [options]",
    "       connect HOST:PORT [--name NAME]   expose a local service (named from its port: 5432 postgres, …)",
    "",
    "Commands:",
    Help.format("connect", Help.entries(command.descriptor)),
    "",
    "Run 'connect <command> --help' for its options. CONNECT_HOME: agent state (~/.connect); CONNECT_HUB_URL: --hub."
  ].join("\n")

/**
 * `connect … --help`: the command's usage behind its parents' names only (not their options), its description and
 * options, then for a command with subcommands those one line each; undefined when `args` ask for no help or name no
 * command (@effect/cli answers those).
 */
const shortHelp = (args: ReadonlyArray<string>): string | undefined => {
  if (!args.includes("--help") && !args.includes("-h")) return undefined
  const path: Array<string> = []
  for (const arg of args) {
    if (arg.startsWith("-")) break
    path.push(arg)
  }
  if (path.length === 0) return rootHelp()
  const node = Help.find(command.descriptor, path)
  if (node === undefined) return undefined
  const self = Help.parentOf(node)
  const own = HelpDoc.toAnsiText(Descriptor.getHelp(self, { ...CliConfig.defaultConfig, showBuiltIns: false })).trimEnd()
  // The usage of the command alone, behind the names of its parents (not their options, which it does not take).
  const usage = HelpDoc.toAnsiText(Usage.getHelp(Descriptor.getUsage(self))).trim()
  const line = `Usage: connect ${[...path.slice(0, -1), usage].join(" ")}`
  if (!Help.hasSubcommands(node)) return `${line}\n\n${own}`
  return [
    `${line}\n       connect ${path.join(" ")} <command> …`,
    "",
    own,
    "",
    "COMMANDS",
    "",
    Help.format(`connect ${path.slice(0, -1).join(" ")}`.trimEnd(), Help.entries(node).map((e) => ({ ...e, path: `${path.at(-1)} ${e.path}` }))),
    "",
    `Run 'connect ${path.join(" ")} <command> --help' for its options.`
  ].join("\n")
}

/**
 * The usage of the deepest command the leading words of `args` name (`hub agent revoke`, not `hub` with every option
 * of the server), for a command line the parser refused.
 */
const usageOf = (args: ReadonlyArray<string>): string => {
  const path: Array<string> = []
  for (const arg of args) {
    if (arg.startsWith("-")) break
    path.push(arg)
  }
  for (; path.length > 0; path.pop()) {
    const node = Help.find(command.descriptor, path)
    if (node === undefined) continue
    const usage = HelpDoc.toAnsiText(Usage.getHelp(Descriptor.getUsage(Help.parentOf(node)))).trim()
    return `Usage: connect ${[...path.slice(0, -1), usage].join(" ")}\nRun 'connect ${path.join(" ")} --help' for details.`
  }
  return rootHelp()
}

// Scrubbed like every log line (core/Scrub.ts): an error may carry a URL, a header or what a peer sent.
const explain = (message: string, code: number) => Console.error(scrub(message)).pipe(Effect.zipRight(Effect.fail(new ExitCode({ code }))))

const commandNames = new Set((subcommands as ReadonlyArray<Command.Command<string, never, any, any>>).flatMap((c) => [...Command.getNames(c)]))

/** `connect HOST:PORT [--name NAME]` is `connect expose HOST:PORT …`: the reference docs' shortest way to expose. */
const expandBareTarget = (argv: ReadonlyArray<string>): ReadonlyArray<string> => {
  const first = argv[2]
  return first !== undefined && !commandNames.has(first) && Option.isSome(AgentCli.parseTarget(first))
    ? [...argv.slice(0, 2), "expose", ...argv.slice(2)]
    : argv
}

const run = (argv: ReadonlyArray<string>) => {
  const help = argv.length === 2 ? rootHelp() : shortHelp(argv.slice(2))
  return help === undefined ? cli(expandBareTarget(argv)) : Console.log(help)
}

const main = (argv: ReadonlyArray<string>) =>
  run(argv).pipe(
    Effect.catchIf(ValidationError.isValidationError, () => explain(usageOf(argv.slice(2)), 2)),
    Effect.catchTags({
      DatabaseError: (error) => explain(`connect: ${error.message}`, 1),
      TlsConfigError: (error) => explain(`connect: ${error.message}`, 2),
      EventLogError: (error) => explain(`connect: ${error.message}`, 1),
      MigrationError: (error) => explain(`connect: database migration failed: ${error.message}`, 1),
      SqlError: (error) => explain(`connect: database error: ${error.message}`, 1),
      ChainBroken: () => Effect.fail(new ExitCode({ code: AuditCli.EXIT_BROKEN })),
      AuditQueryError: (error) => explain(`connect audit: ${error.message}`, 2),
      AccessError: (error) => explain(`connect audit access: ${error.message}`, 1),
      // A filter the hub refuses is bad usage, as it is locally; every other failure is the hub's or the network's.
      AuditRemoteError: (error) => explain(`connect audit: ${error.message}`, error.status === 400 || error.reason === "Invalid" ? 2 : 1),
      CheckpointFileError: (error) => explain(`connect audit: ${error.message}`, 1),
      SigningKeyError: (error) => explain(`connect: ${error.message}`, 1),
      CursorError: (error) => explain(`connect audit export: ${error.message}`, 1),
      ExportError: (error) => explain(`connect audit export: ${error.message}`, 1),
      SinkError: (error) => explain(`connect audit export: ${error.message}`, 1),
      ServeError: (error) =>
        explain(`connect: cannot listen: ${messageOf(error.cause)}`, 1),
      ConfigError: (error) => explain(`connect: bad environment: ${String(error)}`, 1),
      AgentError: (error) => explain(`connect: ${error.message}`, 1),
      ControlError: (error) => explain(`connect: ${error.message}`, 1),
      DaemonError: (error) => explain(`connect: ${error.message}`, 1),
      HubApiError: (error) => explain(`connect: ${error.message}`, 1),
      // A bad --hub URL or no key is bad usage (nothing was sent); a refusal or no answer is the hub's or the network's.
      AdminRemoteError: (error) => explain(`connect: ${error.message}`, error.reason === "Invalid" ? 2 : 1),
      HubUrlError: (error) => explain(`connect: ${error.message}`, 2),
      CaCertError: (error) => explain(`connect: ${error.message}`, 2),
      StateError: (error) => explain(`connect: ${error.message}`, 1)
    }),
    Effect.catchAllCause((cause) =>
      Cause.isInterruptedOnly(cause) || Option.isSome(Cause.failureOption(cause).pipe(Option.filter((e) => e instanceof ExitCode)))
        ? Effect.failCause(cause)
        : explain(`connect: unexpected failure\n${Cause.pretty(cause)}`, 1)
    ),
    Effect.provide(NodeContext.layer)
  )

const teardown: Teardown = (exit, onExit) => {
  if (Exit.isFailure(exit)) {
    const failure = Cause.failureOption(exit.cause)
    if (Option.isSome(failure) && failure.value instanceof ExitCode) return onExit(failure.value.code)
  }
  defaultTeardown(exit, onExit)
}

NodeRuntime.runMain(main(process.argv), { disableErrorReporting: true, teardown })
