/**
 * A child process for the stdout sink test: writes `count` records of `size` bytes through `SinkFile.makeStdout` in
 * one batch, then reports on stderr `accepted` or `failed <reason>: <message>` and exits 0 or 3.
 */
import { Effect } from "effect"
import { makeStdout } from "../../../audit/export/SinkFile.ts"

const count = Number(process.argv[2] ?? "3")
const size = Number(process.argv[3] ?? "10")
const records = Array.from({ length: count }, (_, i) => `${i}:`.padEnd(size, "x"))

Effect.runPromise(
  Effect.flatMap(makeStdout(), (sink) => sink.write(records)).pipe(
    Effect.match({
      onSuccess: () => {
        process.stderr.write("accepted\n")
        process.exitCode = 0
      },
      onFailure: (e) => {
        process.stderr.write(`failed ${e.reason}: ${e.message}\n`)
        process.exitCode = 3
      }
    })
  )
)
