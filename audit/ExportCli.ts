/**
 * `connect audit export`: the log to a SIEM in one of the export formats, on stdout, appended to a file, or to a
 * syslog server over TCP or TLS; resumable with --cursor, live with --follow. Progress on a terminal, one summary line
 * on stderr at the end, and one `AuditRead` event in the log for the run.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { Console, Effect, Either, Exit, Layer, Option, Ref } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import type { EventLog } from "../core/EventLog.ts"
import * as Exporter from "./export/Exporter.ts"
import { Formats } from "./export/Format.ts"
import type { Sink } from "./export/Sink.ts"
import * as SinkFile from "./export/SinkFile.ts"
import * as SinkSyslog from "./export/SinkSyslog.ts"
import { AuditQueryError } from "./Query.ts"

const text = (name: string, description: string) =>
  Options.text(name).pipe(Options.optional, Options.withDescription(description))

const options = {
  format: Options.choice("format", Formats).pipe(
    Options.withDefault("jsonl" as const),
    Options.withDescription("jsonl (every column, the chain verifiable from the export), ecs, ocsf, cef or syslog (RFC 5424).")
  ),
  cursor: text(
    "cursor",
    "Resume from, and keep, the position last delivered in this file (created when missing, replaced atomically after " +
      "each batch the sink confirmed). Without it every run exports the whole log."
  ),
  follow: Options.boolean("follow").pipe(
    Options.withDescription("After the log's end, go on exporting events as they are committed, until Ctrl-C or SIGTERM.")
  ),
  output: text("output", "Append the records to this file (created 0600), one per line; fsync'd before the cursor moves."),
  syslog: text("syslog", "Send the records to a syslog server, tcp://HOST:PORT or tls://HOST:PORT (RFC 5424, octet-counted)."),
  caCert: text("ca-cert", "With --syslog tls://: the CA certificate (PEM) that signed the server's (default: the system's CAs)."),
  batchSize: Options.integer("batch-size").pipe(
    Options.withDefault(1000),
    Options.withDescription("Events per batch: one write, one confirmation by the sink and one cursor write (1 to 100000).")
  ),
  json: Options.boolean("json").pipe(Options.withDescription("Print the summary on stderr as one JSON object.")),
  dataDir: text("data-dir", "The hub's data directory (default $CONNECT_HOME/hub); ignored when DATABASE_URL is set.")
}

type Flags = Command.Command.ParseConfig<typeof options>

const version = (JSON.parse(Fs.readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string })
  .version

/** Where the records go, as flags name it: the sink's layer, its kind for the record of the run, and its framing. */
const sinkOf = (flags: Flags) =>
  Effect.gen(function*() {
    const output = Option.getOrUndefined(flags.output)
    const syslog = Option.getOrUndefined(flags.syslog)
    const caCert = Option.getOrUndefined(flags.caCert)
    const usage = (option: string, message: string) => new AuditQueryError({ option, message })
    if (output !== undefined && syslog !== undefined) return yield* usage("--output", "--output and --syslog: choose one")
    if (syslog === undefined) {
      if (caCert !== undefined) return yield* usage("--ca-cert", "--ca-cert goes with --syslog tls://HOST:PORT")
      return output === undefined
        ? { layer: SinkFile.layerStdout as Layer.Layer<Sink, never, never>, kind: "stdout", target: "stdout", framing: "line" as const }
        : { layer: SinkFile.layerFile(output), kind: "file", target: output, framing: "line" as const }
    }
    const target = SinkSyslog.parseTarget(syslog)
    if (Either.isLeft(target)) return yield* usage("--syslog", target.left.message)
    if (caCert !== undefined && target.right.protocol !== "tls") {
      return yield* usage("--ca-cert", "--ca-cert goes with --syslog tls://HOST:PORT")
    }
    let ca: Buffer | undefined
    if (caCert !== undefined) {
      ca = yield* Effect.try({
        try: () => Fs.readFileSync(caCert),
        catch: (e) => usage("--ca-cert", `cannot read ${caCert}: ${(e as Error).message}`)
      })
    }
    return {
      layer: SinkSyslog.layer(syslog, ca === undefined ? {} : { tls: { ca } }),
      kind: `syslog+${target.right.protocol}`,
      target: syslog,
      framing: "syslog" as const
    }
  })

/** The summary of a run, one line (or one JSON object), for stderr. */
const summary = (flags: Flags, sink: string, p: Exporter.Progress, seconds: number, outcome: "done" | "stopped" | "failed") => {
  const rate = seconds > 0 ? Math.round(p.count / seconds) : 0
  const cursor = Option.getOrUndefined(flags.cursor)
  if (flags.json) {
    return JSON.stringify({
      outcome, format: flags.format, sink, count: p.count, fromPosition: p.fromPosition ?? null,
      toPosition: p.toPosition ?? null, seconds: Number(seconds.toFixed(3)), eventsPerSecond: rate, cursor: cursor ?? null
    })
  }
  const range = p.fromPosition === undefined ? "" : ` (positions ${p.fromPosition}-${p.toPosition})`
  const where = cursor === undefined ? "" : `; cursor ${cursor} at ${p.toPosition ?? "its previous position"}`
  const verb = outcome === "done" ? "exported" : `${outcome} after exporting`
  return `${verb} ${p.count} events${range} as ${flags.format} to ${sink} in ${seconds.toFixed(1)} s (${rate} events/s)${where}`
}

/** A progress line on stderr at most twice a second, only on a terminal. */
const progressLine = (started: number) => {
  let shown = 0
  return (p: Exporter.Progress) =>
    Effect.sync(() => {
      const now = performance.now()
      if (now - shown < 500) return
      shown = now
      const rate = Math.round(p.count / Math.max((now - started) / 1000, 0.001))
      process.stderr.write(`\rexported ${p.count} events (${rate}/s), at position ${p.toPosition}\x1b[K`)
    })
}

const run = (flags: Flags) =>
  Effect.gen(function*() {
    if (flags.batchSize < 1 || flags.batchSize > 100_000) {
      return yield* new AuditQueryError({ option: "--batch-size", message: "--batch-size must be between 1 and 100000" })
    }
    const sink = yield* sinkOf(flags)
    const cursor = Option.getOrUndefined(flags.cursor)
    const started = performance.now()
    const interactive = process.stderr.isTTY === true
    const filters: Record<string, string> = { format: flags.format, sink: sink.kind, ...(flags.follow ? { follow: "true" } : {}) }
    const exportAll = Effect.gen(function*() {
      const after = yield* Exporter.resume(cursor)
      const progress = yield* Ref.make(Exporter.initial)
      // Whatever ends the run (the log's end, Ctrl-C, a sink that failed), it is recorded with what it delivered.
      return yield* Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          const exit = yield* Effect.exit(restore(Exporter.run(after, {
            format: flags.format,
            framing: sink.framing,
            context: { productVersion: version, hostname: Os.hostname() },
            cursor,
            follow: flags.follow,
            batchSize: flags.batchSize,
            ...(interactive ? { onBatch: progressLine(started) } : {})
          }, progress)))
          const delivered = yield* Ref.get(progress)
          if (interactive) process.stderr.write("\r\x1b[K")
          const outcome = Exit.isSuccess(exit) ? "done" : Exit.isInterrupted(exit) ? "stopped" : "failed"
          yield* Console.error(summary(flags, sink.target, delivered, (performance.now() - started) / 1000, outcome))
          const recorded = yield* Exporter.recordRead(filters, delivered).pipe(Effect.timeout("15 seconds"), Effect.either)
          if (Either.isLeft(recorded)) {
            yield* Console.error(`connect audit export: could not record this export in the log: ${recorded.left.message}`)
            if (Exit.isSuccess(exit)) return yield* recorded.left
          }
          return yield* exit
        })
      )
    })
    yield* exportAll.pipe(Effect.provide(sink.layer))
  })

/**
 * The `connect audit export` command reading the hub's log through `logLayer` (bin/connect.ts passes the hub's
 * database and event log: audit/ does not know how they are built).
 */
export const command = <E, R>(logLayer: (flags: { dataDir: string | undefined }) => Layer.Layer<EventLog, E, R>) =>
  Command.make("export", options, (flags) =>
    run(flags).pipe(Effect.provide(logLayer({ dataDir: Option.getOrUndefined(flags.dataDir) })))).pipe(
      Command.withDescription(
        "Export the event log in position order to stdout, a file (--output) or a syslog server (--syslog), every " +
          "record with its position, event id, prevHash and hash. With --cursor a run resumes after the last batch the " +
          "sink confirmed (at least once: a crash may send a batch again, the event id tells duplicates apart) and " +
          "refuses a log that no longer holds the event the cursor stands on. Each run is recorded in the log as " +
          "an AuditRead event."
      )
    )
