/**
 * The verify rows of `npm run bench -- audit`: `connect audit verify` over the whole log in events/s (Postgres
 * recomputing the hashes, and --independent), and the time one signed checkpoint adds (`verify --checkpoint`): its
 * signature and stored-hash lookup after the run, or with its own chain from 1 to its position.
 */
import { Effect, Either } from "effect"
import * as Checkpoints from "../../audit/Checkpoints.ts"
import * as Verify from "../../audit/Verify.ts"
import * as CheckpointNote from "../../core/CheckpointNote.ts"
import { EventLog } from "../../core/EventLog.ts"
import * as SignedNote from "../../core/SignedNote.ts"
import * as SigningKeys from "../../core/SigningKeys.ts"
import { median, percentile, printTable } from "./Report.ts"

const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const started = performance.now()
    const value = yield* effect
    return [performance.now() - started, value] as const
  })

/** Runs verify `runs` times per mode and checks a note over the head `checks` times; prints and returns the rows. */
export const run = (options: { readonly runs: number; readonly checks: number }) =>
  Effect.gen(function*() {
    const log = yield* EventLog
    const head = yield* log.head
    const rows: Array<Record<string, unknown>> = []
    for (const independent of [false, true]) {
      const times: Array<number> = []
      for (let i = 0; i < options.runs; i++) {
        const [ms, result] = yield* timed(Verify.verify({ independent }))
        if (!result.ok) return yield* Effect.dieMessage(`the bench's log does not verify: ${result.message}`)
        times.push(ms)
      }
      const ms = median(times)
      rows.push({ what: independent ? "verify --independent" : "verify (Postgres recomputes)", events: head.position, "median ms": ms, "events/s": Math.round(head.position / (ms / 1000)) })
    }
    const key = SigningKeys.generate("bench.example/connect", new Date())
    const text = CheckpointNote.format({ origin: "bench.example/connect", position: head.position, headHash: Buffer.from(head.hash).toString("hex") })
    const note = Buffer.from(Either.getOrThrow(SignedNote.sign(text, [SigningKeys.signerOf(key)])))
    const verifiers = [SigningKeys.verifierOf(key)]
    const cases = [
      ["--checkpoint after the run: signature + stored hash", options.checks, () => Effect.succeed<Verify.VerifyResult>({ ok: true, count: 0, headHash: "", from: 1, to: head.position })],
      // As the CLI checks a note: the chain up to it recomputed in this process, never by the server (see audit/Cli.ts).
      ["--checkpoint alone: signature + stored hash + chain 1..P (in this process)", Math.min(options.runs, options.checks), (p: number) => Verify.verify({ to: p, independent: true })]
    ] as const
    for (const [what, n, chain] of cases) {
      const times: Array<number> = []
      for (let i = 0; i < n; i++) {
        const [ms, outcome] = yield* timed(Checkpoints.check("bench.note", note, verifiers, chain))
        if (!outcome.ok) return yield* Effect.dieMessage(`the bench's checkpoint does not hold: ${outcome.message}`)
        times.push(ms)
      }
      rows.push({ what, events: head.position, "median ms": median(times), "p99 ms": percentile(times, 99) })
    }
    printTable(`connect audit verify over ${head.position} events (${options.runs} runs per mode; checkpoint checks ${options.checks})`, ["what", "events", "median ms", "p99 ms", "events/s"], rows)
    return rows
  })
