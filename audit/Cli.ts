/**
 * `connect audit verify` (also `connect hub verify-log`): recomputes the event log's hash chain and prints OK with the
 * count, or every broken position (the first one first). Exit 0 when the chain holds, 3 when it does not.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import type { EventLog } from "../core/EventLog.ts"
import { Console, Effect, Layer, Schema } from "effect"
import { verify } from "./Verify.ts"

/** Exit code of a verification that found the chain broken (distinct from 1, "could not run"). */
export const EXIT_BROKEN = 3

/** The chain does not hold (the breaks are already printed); the process then exits with {@link EXIT_BROKEN}. */
export class ChainBroken extends Schema.TaggedError<ChainBroken>()("ChainBroken", {
  /** The first position at which the chain does not hold. */
  position: Schema.Number,
  message: Schema.String
}) {}

const json = Options.boolean("json").pipe(Options.withDescription("Print the result as one JSON object."))

const independent = Options.boolean("independent").pipe(
  Options.withDescription(
    "Recompute every hash in this process from the rows as read, instead of having Postgres recompute them " +
      "(3-5x slower; trusts nothing of the server but the rows it returns)."
  )
)

/**
 * The verify command under `name`, reading the log through `logLayer` (bin/connect.ts passes the hub's database and
 * event log; audit/ does not know how they are built, and hub/ does not import this command).
 */
export const verifyCommand = <E, R>(name: string, logLayer: (flags: { dataDir: string | undefined }) => Layer.Layer<EventLog, E, R>) =>
  Command.make(
    name,
    {
      json,
      independent,
      dataDir: Options.text("data-dir").pipe(
        Options.optional,
        Options.withDescription("The hub's data directory (default $CONNECT_HOME/hub); ignored when DATABASE_URL is set.")
      )
    },
    (flags) =>
      Effect.gen(function* () {
        const started = performance.now()
        const interactive = !flags.json && process.stderr.isTTY
        const result = yield* verify({
          independent: flags.independent,
          onProgress: (count) => (interactive ? Effect.sync(() => process.stderr.write(`\rverified ${count} events…`)) : Effect.void)
        })
        if (interactive) process.stderr.write("\r\x1b[K")
        const seconds = (performance.now() - started) / 1000
        if (flags.json) {
          yield* Console.log(JSON.stringify({ ...result, seconds }))
        } else if (result.ok) {
          yield* Console.log(`OK: ${result.count} events, hash chain intact (head ${result.headHash.slice(0, 16)}…, ${seconds.toFixed(1)} s)`)
        } else {
          const more = result.breaks.slice(1).map((b) => `  ${b.message}`)
          const total = `${result.breaks.length}${result.truncated ? "+" : ""} break${result.breaks.length === 1 ? "" : "s"}`
          yield* Console.log(
            [`BROKEN at position ${result.position}: ${result.message} (${result.count} events verified before it)`, ...more]
              .join("\n") + (result.breaks.length > 1 || result.truncated ? `\n${total}` : "")
          )
        }
        if (!result.ok) return yield* new ChainBroken({ position: result.position, message: `chain broken at ${result.position}` })
      }).pipe(Effect.provide(logLayer({ dataDir: flags.dataDir._tag === "Some" ? flags.dataDir.value : undefined })))
  ).pipe(
    Command.withDescription(
      "Recompute the event log's SHA-256 hash chain from position 1 and print OK with the count, or every position " +
        "that was altered, unlinked or is missing (--json lists them under breaks). Postgres recomputes the hashes (two ranges at a time) unless " +
        "--independent is given. Exit code 0 when intact, 3 when broken, 1 when it could not run."
    )
  )
