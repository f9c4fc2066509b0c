/**
 * The export rows of `npm run bench -- audit`: `connect audit export`'s loop (read, format, write to a file sink with
 * an fsync per batch, cursor written atomically after each) over the whole log in events/s per format, against
 * `COPY (SELECT … FROM events ORDER BY position) TO STDOUT` of the same rows (received by the client and dropped), the
 * floor of getting them out of Postgres at all.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { Effect, Ref } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Exporter from "../../audit/export/Exporter.ts"
import { Formats } from "../../audit/export/Format.ts"
import { Sink } from "../../audit/export/Sink.ts"
import { makeFile } from "../../audit/export/SinkFile.ts"
import { EventLog } from "../../core/EventLog.ts"
import { median, printTable } from "./Report.ts"

const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const started = performance.now()
    const value = yield* effect
    return [performance.now() - started, value] as const
  })

/** Exports the log `runs` times per format and COPYs it as often; prints and returns the rows. */
export const run = (options: { readonly runs: number; readonly batchSize: number }) =>
  Effect.gen(function*() {
    const log = yield* EventLog
    const sql = yield* SqlClient.SqlClient
    const head = (yield* log.head).position
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-bench-export-"))
    yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true })))
    const copy = sql.unsafe(
      `copy (select position, id, stream, version, workspace_id, type, data, meta, recorded_at, prev_hash, hash
               from events where position <= ${head} order by position) to stdout`
    )
    const copyTimes: Array<number> = []
    for (let i = 0; i < options.runs; i++) copyTimes.push((yield* timed(copy))[0])
    const copyMs = median(copyTimes)
    const rows: Array<Record<string, unknown>> = [
      { what: "COPY (SELECT … FROM events) TO STDOUT", events: head, "median ms": copyMs, "events/s": Math.round(head / (copyMs / 1000)), "× COPY": 1, "MB out": "" }
    ]
    for (const format of Formats) {
      const times: Array<number> = []
      let bytes = 0
      for (let i = 0; i < options.runs; i++) {
        const output = Path.join(dir, `${format}.${i}`)
        const cursor = Path.join(dir, `${format}.${i}.cursor`)
        const [ms, delivered] = yield* timed(Effect.scoped(Effect.gen(function*() {
          const sink = yield* makeFile(output)
          const progress = yield* Ref.make(Exporter.initial)
          yield* Exporter.run(0, {
            format,
            framing: "line",
            context: { productVersion: "0.1.0", hostname: "bench.example" },
            cursor,
            follow: false,
            batchSize: options.batchSize
          }, progress).pipe(Effect.provideService(Sink, sink))
          return yield* Ref.get(progress)
        })))
        if (delivered.count !== head) return yield* Effect.dieMessage(`export of ${format} delivered ${delivered.count} of ${head} events`)
        bytes = Fs.statSync(output).size
        Fs.rmSync(output)
        times.push(ms)
      }
      const ms = median(times)
      rows.push({
        what: `export --format ${format} --output FILE --cursor F`,
        events: head,
        "median ms": ms,
        "events/s": Math.round(head / (ms / 1000)),
        "× COPY": ms / copyMs,
        "MB out": bytes / 1e6
      })
    }
    printTable(
      `connect audit export over ${head} events, batches of ${options.batchSize} (fsync + cursor each), median of ${options.runs}`,
      ["what", "events", "median ms", "events/s", "× COPY", "MB out"],
      rows
    )
    return rows
  }).pipe(Effect.scoped, Effect.provide(NodeFileSystem.layer))
