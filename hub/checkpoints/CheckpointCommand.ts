/**
 * The operator's `--checkpoint-command`: run through `/bin/sh -c` with the signed note on stdin and its path in
 * `CONNECT_CHECKPOINT_FILE` (and the position in `CONNECT_CHECKPOINT_POSITION`), so it can copy the note off the box.
 */
import { spawn } from "node:child_process"
import { Duration, Effect, Schema } from "effect"

/** The command could not start, failed, or outlived its time. */
export class CheckpointCommandError extends Schema.TaggedError<CheckpointCommandError>()("CheckpointCommandError", {
  reason: Schema.Literal("Spawn", "Exit", "Timeout"),
  message: Schema.String
}) {}

/**
 * A command that copies a few hundred bytes somewhere (scp, aws s3 cp, curl) finishes in seconds; one that takes a
 * minute is stuck, and is killed so that the next checkpoint is not held up behind it.
 */
export const TIMEOUT = Duration.seconds(60)

/** What the command's stderr contributes to a failure message: its last bytes, one line. */
const tail = (text: string) => text.trim().split("\n").slice(-1)[0]?.slice(-300) ?? ""

/**
 * The environment without the database credentials — the URLs, and libpq's PG* variables (PGPASSWORD, PGPASSFILE…),
 * which the Postgres client reads when a URL has no password — nor an API key: a command that copies a note needs none.
 */
const withoutDatabaseUrls = (env: NodeJS.ProcessEnv): NodeJS.ProcessEnv =>
  Object.fromEntries(Object.entries(env).filter(([name]) => !/^DATABASE_.*URL$|^PG[A-Z]+$|^CONNECT_API_KEY$/.test(name)))

/** Runs `command` with `note` on stdin; succeeds when it exits 0. */
export const run = (command: string, note: string, path: string, position: number) =>
  Effect.async<void, CheckpointCommandError>((resume) => {
    const child = spawn("/bin/sh", ["-c", command], {
      stdio: ["pipe", "ignore", "pipe"],
      env: { ...withoutDatabaseUrls(process.env), CONNECT_CHECKPOINT_FILE: path, CONNECT_CHECKPOINT_POSITION: String(position) }
    })
    let stderr = ""
    child.stderr.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString("utf8")).slice(-2000)
    })
    // A command that does not read its stdin closes the pipe: that is not a failure of the command.
    child.stdin.on("error", () => {})
    child.stdin.end(note)
    child.on("error", (e) => resume(Effect.fail(new CheckpointCommandError({ reason: "Spawn", message: `cannot run the checkpoint command: ${e.message}` }))))
    child.on("close", (code, signal) => {
      if (code === 0) return resume(Effect.void)
      const how = code === null ? `killed by ${signal}` : `exit ${code}`
      const said = tail(stderr)
      resume(Effect.fail(new CheckpointCommandError({ reason: "Exit", message: `the checkpoint command failed (${how})${said ? `: ${said}` : ""}` })))
    })
    return Effect.sync(() => {
      child.kill("SIGKILL")
    })
  }).pipe(
    // The checkpoint around it is uninterruptible (it finishes during a shutdown); the command alone can be cut short.
    Effect.interruptible,
    Effect.timeoutFail({
      duration: TIMEOUT,
      onTimeout: () => new CheckpointCommandError({ reason: "Timeout", message: `the checkpoint command ran over ${Duration.format(TIMEOUT)} and was killed` })
    }),
    Effect.withSpan("CheckpointCommand.run")
  )
