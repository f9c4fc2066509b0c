/**
 * The hub's spool of facts that already happened (a tunnel closed, bytes counted) and must reach the event log even
 * while Postgres is unreachable: an append-only JSON-lines file in the hub's data directory, replayed in order once
 * the log answers again. Each entry carries its stream and expected version, so a replay after a lost ack meets a
 * version conflict and is skipped: every entry lands exactly once.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { Effect, Either, Schema } from "effect"
import { EventLog, type EventLogError, type ExpectedVersion, VersionConflict } from "../core/EventLog.ts"
import { decodeEventEither, encodeEvent, type Event, EventMeta } from "../core/Events.ts"

/** One spooled append. */
interface Entry {
  readonly stream: string
  readonly expectedVersion: ExpectedVersion
  readonly workspaceId: string | null
  readonly type: string
  readonly data: unknown
  readonly meta: unknown
}

const encodeMeta = Schema.encodeSync(EventMeta)
const decodeMeta = Schema.decodeUnknownEither(EventMeta)

/** The spool of one hub. */
export interface Spool {
  /** Appends an entry to the file (fsynced before it returns). */
  readonly write: (
    stream: string,
    event: Event,
    options: { readonly expectedVersion: ExpectedVersion; readonly workspaceId: string | null; readonly meta: EventMeta }
  ) => Effect.Effect<void>
  /** Entries written and not yet replayed. */
  readonly pending: () => number
  /**
   * Appends pending entries in order until one fails to append (the log is still unreachable) or none is left;
   * returns how many were replayed. Once everything is replayed the files are removed.
   */
  readonly replay: Effect.Effect<number, never, EventLog>
}

/** Opens (or resumes) the spool in `dir`: `spool.jsonl` and the byte offset replayed so far in `spool.offset`. */
export const make = Effect.fn("Spool.make")(function*(dir: string) {
  const file = Path.join(dir, "spool.jsonl")
  const offsetFile = Path.join(dir, "spool.offset")
  const lock = yield* Effect.makeSemaphore(1)

  const readOffset = () => {
    try {
      return Number(Fs.readFileSync(offsetFile, "utf8").trim()) || 0
    } catch {
      return 0
    }
  }
  const writeOffset = (offset: number) => {
    const tmp = `${offsetFile}.tmp`
    Fs.writeFileSync(tmp, `${offset}\n`)
    Fs.renameSync(tmp, offsetFile)
  }
  const unreplayed = (): Array<{ readonly line: string; readonly end: number }> => {
    let text: Buffer
    try {
      text = Fs.readFileSync(file)
    } catch {
      return []
    }
    const lines: Array<{ line: string; end: number }> = []
    let start = readOffset()
    while (start < text.length) {
      const nl = text.indexOf(0x0a, start)
      // A torn last line (the hub died mid-write) was never acknowledged to anyone; it is ignored.
      if (nl < 0) break
      lines.push({ line: text.subarray(start, nl).toString("utf8"), end: nl + 1 })
      start = nl + 1
    }
    return lines
  }
  let pending = unreplayed().length

  const write: Spool["write"] = (stream, event, options) =>
    lock.withPermits(1)(
      Effect.sync(() => {
        const { type, data } = encodeEvent(event)
        const entry: Entry = {
          stream,
          expectedVersion: options.expectedVersion,
          workspaceId: options.workspaceId,
          type,
          data,
          meta: encodeMeta(options.meta)
        }
        Fs.mkdirSync(dir, { recursive: true })
        const fd = Fs.openSync(file, "a", 0o600)
        try {
          Fs.writeSync(fd, `${JSON.stringify(entry)}\n`)
          Fs.fsyncSync(fd)
        } finally {
          Fs.closeSync(fd)
        }
        pending++
      })
    )

  const appendEntry = (entry: Entry): Effect.Effect<boolean, EventLogError, EventLog> =>
    Effect.gen(function*() {
      const event = decodeEventEither(entry.type, entry.data)
      const meta = decodeMeta(entry.meta)
      if (Either.isLeft(event) || Either.isLeft(meta)) {
        yield* Effect.logError(`spool: dropping an entry that does not decode (${entry.type} on ${entry.stream})`)
        return true
      }
      const log = yield* EventLog
      return yield* log
        .append(entry.stream, [event.right], {
          expectedVersion: entry.expectedVersion,
          workspaceId: entry.workspaceId,
          meta: meta.right
        })
        .pipe(
          Effect.as(true),
          // Already there: an earlier replay (or the original append) committed and only its ack was lost.
          Effect.catchIf((e): e is VersionConflict => e instanceof VersionConflict, () => Effect.succeed(true))
        )
    })

  const replay: Spool["replay"] = lock.withPermits(1)(
    Effect.gen(function*() {
      let replayed = 0
      for (const { line, end } of unreplayed()) {
        const entry = yield* Effect.try(() => JSON.parse(line) as Entry).pipe(Effect.option)
        if (entry._tag === "Some") {
          const done = yield* Effect.either(appendEntry(entry.value))
          if (Either.isLeft(done)) return replayed
        }
        writeOffset(end)
        pending = Math.max(0, pending - 1)
        replayed++
      }
      // Everything is in the log now (writers wait on the lock), so the files can go.
      Fs.rmSync(file, { force: true })
      Fs.rmSync(offsetFile, { force: true })
      pending = 0
      return replayed
    })
  )

  return { write, pending: () => pending, replay } satisfies Spool
})

/** Replays the spool every `intervalMs` while it has entries, for as long as the surrounding scope lives. */
export const runReplayer = (spool: Spool, intervalMs = 500) =>
  Effect.gen(function*() {
    if (spool.pending() > 0) {
      const n = yield* spool.replay
      if (n > 0) yield* Effect.logInfo(`spool: appended ${n} spooled event(s) to the log`)
    }
  }).pipe(
    Effect.zipRight(Effect.sleep(intervalMs)),
    Effect.forever,
    Effect.forkScoped
  )
