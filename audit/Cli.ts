/**
 * `connect audit verify` (also `connect hub verify-log`): recomputes the event log's hash chain (all of it, or
 * --from/--to) and prints OK with the count, or every broken position (the first one first); with --checkpoint, also
 * proves that the log still holds what each signed note says. Exit 0 when everything holds, 3 when not.
 */
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import type { SqlClient } from "@effect/sql"
import type { EventLog } from "../core/EventLog.ts"
import * as SignedNote from "../core/SignedNote.ts"
import type { SigningKeyStore } from "../core/SigningKeys.ts"
import { Console, Effect, Either, Layer, Option, Schema } from "effect"
import * as Checkpoints from "./Checkpoints.ts"
import * as Progress from "./Progress.ts"
import { AuditQueryError } from "./Query.ts"
import { verify, type VerifyResult } from "./Verify.ts"
import * as VerifyRecord from "./VerifyRecord.ts"

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

const position = (name: string, description: string) =>
  Options.integer(name).pipe(
    Options.filterMap((n) => (n >= 1 && Number.isSafeInteger(n) ? Option.some(n) : Option.none()), `--${name} must be a position, 1 or more`),
    Options.optional,
    Options.withDescription(description)
  )

const checkpoint = Options.text("checkpoint").pipe(
  Options.repeated,
  Options.withDescription(
    "A signed checkpoint note (repeatable): its signature is verified, then the log must still hold its position with " +
      "the note's head hash and the chain up to it must hold. A rewritten or cut log fails it."
  )
)

const key = Options.text("key").pipe(
  Options.repeated,
  Options.mapEffect((texts) =>
    Effect.forEach(texts, (text) =>
      Either.match(SignedNote.parseVerifierKey(text), {
        onLeft: (e) => Effect.fail(ValidationError.invalidValue(HelpDoc.p(`--key: ${e.message}`))),
        onRight: Effect.succeed
      }))),
  Options.withDescription(
    "A public key to verify checkpoints with, as `connect audit pubkey` prints it (name+keyid+key; repeatable). With " +
      "--key or --key-file only the keys given are trusted; without, the keys in the hub's data directory."
  )
)

const keyFile = Options.text("key-file").pipe(
  Options.optional,
  Options.withDescription("A file of public keys, one per line, to verify checkpoints with (as --key).")
)

/** The keys to check notes with: the auditor's own when given, else the hub's ring. */
const verifiersOf = (keys: ReadonlyArray<SignedNote.NoteVerifier>, keyFile: Option.Option<string>) =>
  Effect.gen(function*() {
    if (keys.length === 0 && Option.isNone(keyFile)) return yield* Checkpoints.storeVerifiers
    if (Option.isNone(keyFile)) return keys
    const text = new TextDecoder().decode(yield* Checkpoints.readNote(keyFile.value))
    return [...keys, ...(yield* Checkpoints.parseKeyFile(text, keyFile.value))]
  })

/** Answers "does the chain hold up to P" from the run already made when it covered 1..P, else verifies 1..P. */
const chainFrom = (result: VerifyResult, independent: boolean) => (position: number) => {
  if (!result.ok && result.position <= position) return Effect.succeed(result)
  if (result.from === 1 && result.to >= position) {
    return Effect.succeed<VerifyResult>({ ok: true, count: position, headHash: "", from: 1, to: position })
  }
  return verify({ to: position, independent })
}

const summary = (result: VerifyResult, seconds: number) => {
  if (result.ok) {
    const range = result.from === 1
      ? `${result.count} events`
      : `positions ${result.from}-${result.to} (${result.count} events; the hash at position ${result.from - 1} taken as given)`
    return `OK: ${range}, hash chain intact (head ${result.headHash.slice(0, 16)}…, ${seconds.toFixed(1)} s)`
  }
  const more = result.breaks.slice(1).map((b) => `  ${b.message}`)
  const total = `${result.breaks.length}${result.truncated ? "+" : ""} break${result.breaks.length === 1 ? "" : "s"}`
  return [`BROKEN at position ${result.position}: ${result.message} (${result.count} events verified before it)`, ...more]
    .join("\n") + (result.breaks.length > 1 || result.truncated ? `\n${total}` : "")
}

const checkpointLine = (c: Checkpoints.CheckpointOutcome) =>
  `checkpoint ${c.file}: ${c.ok ? "OK" : "FAILED"}${c.signedBy ? `, signed by ${c.signedBy.join(", ")}` : ""}: ${c.message}`

/**
 * The verify command under `name`, reading the log through `logLayer` (which also gives the database its run is
 * recorded through, audit/PgReadWindows.ts) and the hub's signing keys through `keysLayer`
 * (bin/connect.ts passes the hub's; audit/ does not know how they are built, and hub/ does not import this command).
 */
export const verifyCommand = <E, R, E2, R2>(
  name: string,
  logLayer: (flags: { dataDir: string | undefined }) => Layer.Layer<EventLog | SqlClient.SqlClient, E, R>,
  keysLayer: (flags: { dataDir: string | undefined }) => Layer.Layer<SigningKeyStore, E2, R2>
) =>
  Command.make(
    name,
    {
      json,
      independent,
      from: position("from", "First position to verify (default 1); the stored hash before it is taken as given."),
      to: position("to", "Last position to verify (default: the head; positions past the head are reported missing)."),
      checkpoint,
      key,
      keyFile,
      dataDir: Options.text("data-dir").pipe(
        Options.optional,
        Options.withDescription("The hub's data directory (default $CONNECT_HOME/hub); ignored when DATABASE_URL is set.")
      )
    },
    (flags) =>
      Effect.gen(function*() {
        const from = Option.getOrUndefined(flags.from)
        const to = Option.getOrUndefined(flags.to)
        if (from !== undefined && to !== undefined && from > to) {
          return yield* new AuditQueryError({ option: "--from", message: `--from ${from} is after --to ${to}` })
        }
        // Notes and keys are read first: a missing file fails before a long verification.
        const notes = yield* Effect.forEach(flags.checkpoint, (file) => Effect.map(Checkpoints.readNote(file), (note) => ({ file, note })))
        const verifiers = notes.length === 0 ? [] : yield* verifiersOf(flags.key, flags.keyFile)
        const started = performance.now()
        const interactive = !flags.json && process.stderr.isTTY === true
        // A note is the auditor's proof against the operator, who may control the server: its chain is recomputed
        // here from the rows, never by Postgres (a database whose search_path puts an `=` on bytea that answers true
        // ahead of pg_catalog's, or a replaced sha256, would report an altered row as intact).
        const independent = flags.independent || notes.length > 0
        const result = yield* verify({
          independent,
          ...(from !== undefined && { from }),
          ...(to !== undefined && { to }),
          onProgress: (count, total) =>
            interactive
              ? Effect.sync(() => process.stderr.write(`\r\x1b[K${Progress.render(count, total, performance.now() - started)}`))
              : Effect.void
        })
        if (interactive) process.stderr.write("\r\x1b[K")
        const seconds = (performance.now() - started) / 1000
        const chainUpTo = chainFrom(result, independent)
        const checked = yield* Effect.forEach(notes, ({ file, note }) => Checkpoints.check(file, note, verifiers, chainUpTo))
        if (flags.json) {
          yield* Console.log(JSON.stringify({ ...result, seconds, ...(notes.length > 0 && { checkpoints: checked }) }))
        } else {
          yield* Console.log([summary(result, seconds), ...checked.map(checkpointLine)].join("\n"))
        }
        // On the log for the console's Overview; a log that cannot take it changes nothing here (VerifyRecord.ts).
        yield* VerifyRecord.record({ from, to, independent }, result, checked)
        if (!result.ok) return yield* new ChainBroken({ position: result.position, message: `chain broken at ${result.position}` })
        const bad = checked.find((c) => !c.ok)
        if (bad) return yield* new ChainBroken({ position: bad.position ?? 0, message: `checkpoint ${bad.file} does not hold` })
      }).pipe(Effect.provide(Layer.merge(
        logLayer({ dataDir: Option.getOrUndefined(flags.dataDir) }),
        keysLayer({ dataDir: Option.getOrUndefined(flags.dataDir) })
      )))
  ).pipe(
    Command.withDescription(
      "Recompute the event log's SHA-256 hash chain from position 1 (or --from/--to) and print OK with the count, or " +
        "every position that was altered, unlinked or is missing (--json lists them under breaks), and record the result " +
        "on the log (an AuditRead of kind verify, which the web console shows). Postgres recomputes " +
        "the hashes (two ranges at a time) unless --independent (or --checkpoint) is given. With --checkpoint NOTE, also prove the log " +
        "still holds the prefix a signed checkpoint covers. A progress bar on a terminal. Exit code 0 when intact, " +
        "3 when broken, 1 when it could not run."
    )
  )
