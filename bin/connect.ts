/**
 * The `connect` command line: the root command, its subcommands, and how failures become exit codes
 * (0 ok or stopped by a signal, 1 runtime failure with a one-line reason, 2 bad usage).
 */
import * as Fs from "node:fs"
import * as Command from "@effect/cli/Command"
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

const usageOf = (args: ReadonlyArray<string>): string => {
  const name = args.find((a) => !a.startsWith("-"))
  // Commands are invariant in their types; only their names and usage are read here.
  const all = subcommands as ReadonlyArray<Command.Command<string, never, any, any>>
  const sub = all.find((c) => name !== undefined && HashSet.has(Command.getNames(c), name))
  if (sub === undefined) {
    const names = all.map((c) => [...Command.getNames(c)].join("|")).join("|")
    return `Usage: connect <${names}> [options]\nRun 'connect --help' for details.`
  }
  const usage = HelpDoc.toAnsiText(Usage.getHelp(Command.getUsage(sub))).trim()
  return `Usage: connect ${usage}\nRun 'connect ${name} --help' for details.`
}

const explain = (message: string, code: number) => Console.error(message).pipe(Effect.zipRight(Effect.fail(new ExitCode({ code }))))

const main = (argv: ReadonlyArray<string>) =>
  cli(argv).pipe(
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
      HubUrlError: (error) => explain(`connect: ${error.message}`, 2),
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
