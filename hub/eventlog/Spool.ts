/**
 * The hub's spool of facts that already happened (a tunnel closed, an agent disconnected, refusals counted) and must
 * reach the event log even while Postgres is unreachable: an append-only JSON-lines file in the hub's data directory,
 * replayed in order once the log answers again. Each entry carries its own event id (drawn once, when it is spooled),
 * its stream and expected version, so a replay after a lost ack is recognised and lands exactly once.
 *
 * Crash safety: a line is acknowledged only once it and its newline are fsynced; a torn tail (the hub died mid-write)
 * is cut back to the last newline when the spool is opened, before anything is appended after it. A complete line that
 * does not decode, or an entry the log refuses for good, stops the replay at that line, loudly: nothing is skipped.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { Duration, Effect, Either, Schema } from "effect"
import { messageOf } from "../../core/ErrorMessage.ts"
import { type AppendOptions, EventLog, EventLogError, type ExpectedVersion, VersionConflict } from "../../core/EventLog.ts"
import { decodeEventEither, encodeEvent, type Event, EventMeta } from "../../core/Events.ts"
import { uuidv7 } from "../../core/Ids.ts"

/** One spooled append. */
interface Entry {
  /** The event's id, drawn once when it was spooled (absent in spools written before ids were kept). */
  readonly id?: string
  readonly stream: string
  readonly expectedVersion: ExpectedVersion
  readonly workspaceId: string | null
  readonly type: string
  readonly data: unknown
  readonly meta: unknown
}

/** A complete line of `spool.jsonl` not yet replayed: its 1-based line number and the byte offset after it. */
interface Line {
  readonly text: string
  readonly number: number
  readonly end: number
}

/**
 * Why a replay stopped: the log is unreachable (retry later), a complete line does not decode (`Corrupt`), or the log
 * refused the entry for good (`Refused`). `line` is the 1-based line of `spool.jsonl` it stopped at.
 */
export class SpoolError extends Schema.TaggedError<SpoolError>()("SpoolError", {
  reason: Schema.Literal("Unavailable", "Corrupt", "Refused"),
  file: Schema.String,
  line: Schema.Number,
  /** Entries replayed before it stopped. */
  replayed: Schema.Number,
  message: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {}

const encodeMeta = Schema.encodeSync(EventMeta)
const decodeMeta = Schema.decodeUnknownEither(EventMeta)

/** Options of one spooled append. */
export interface SpoolWriteOptions {
  readonly expectedVersion: ExpectedVersion
  readonly workspaceId: string | null
  readonly meta: EventMeta
  /** The event's id when the caller already drew one for a direct append (default: a fresh UUIDv7). */
  readonly id?: string
}

/** The spool of one hub. */
export interface Spool {
  /** Appends an entry to the file (fsynced before it returns). */
  readonly write: (stream: string, event: Event, options: SpoolWriteOptions) => Effect.Effect<void>
  /** Entries written and not yet replayed. */
  readonly pending: () => number
  /** The streams of the entries not yet replayed (lines that do not parse name none). */
  readonly pendingStreams: () => ReadonlySet<string>
  /**
   * Appends pending entries in order until none is left, returning how many were replayed; stops at the first entry
   * that cannot be appended (`SpoolError`). Once everything is replayed the files are removed.
   */
  readonly replay: Effect.Effect<number, SpoolError, EventLog>
}

/** Flushes a directory's entries (a created, renamed or removed file) to disk. */
const fsyncDir = (dir: string) => {
  const fd = Fs.openSync(dir, "r")
  try {
    Fs.fsyncSync(fd)
  } finally {
    Fs.closeSync(fd)
  }
}

/** Cuts a torn tail (bytes after the last newline) off `file`; returns how many bytes were cut. */
const cutTornTail = (file: string): number => {
  let text: Buffer
  try {
    text = Fs.readFileSync(file)
  } catch {
    return 0
  }
  const keep = text.lastIndexOf(0x0a) + 1
  if (keep === text.length) return 0
  Fs.truncateSync(file, keep)
  const fd = Fs.openSync(file, "r+")
  try {
    Fs.fsyncSync(fd)
  } finally {
    Fs.closeSync(fd)
  }
  return text.length - keep
}

/** The complete lines of `text` that end after `offset`, numbered from the start of the file. */
const linesAfter = (text: Buffer, offset: number): Array<Line> => {
  const lines: Array<Line> = []
  let start = 0
  let number = 0
  for (let nl = text.indexOf(0x0a); nl >= 0; nl = text.indexOf(0x0a, start)) {
    number++
    if (start >= offset) lines.push({ text: text.subarray(start, nl).toString("utf8"), number, end: nl + 1 })
    start = nl + 1
  }
  return lines
}

/**
 * The options a replayed entry is appended with: its own id, so that a replay of an entry whose earlier append
 * committed (its reply lost) stores nothing a second time, whatever its expected version.
 */
const replayAppendOptions = (entry: Entry, meta: EventMeta): AppendOptions => ({
  expectedVersion: entry.expectedVersion,
  workspaceId: entry.workspaceId,
  meta,
  ...(entry.id === undefined ? {} : { ids: [entry.id] })
})

/** Opens (or resumes) the spool in `dir`: `spool.jsonl` and the byte offset replayed so far in `spool.offset`. */
export const make = Effect.fn("Spool.make")(function*(dir: string) {
  const file = Path.join(dir, "spool.jsonl")
  const offsetFile = Path.join(dir, "spool.offset")
  const lock = yield* Effect.makeSemaphore(1)

  const opened = yield* Effect.sync(() => open(dir, file, offsetFile))
  if (opened.cut > 0) {
    yield* Effect.logWarning(`spool: cut a torn last line of ${opened.cut} byte(s) from ${file} (never acknowledged)`)
  }

  const readOffset = () => {
    try {
      return Number(Fs.readFileSync(offsetFile, "utf8").trim()) || 0
    } catch {
      return 0
    }
  }
  const writeOffset = (offset: number) => {
    const tmp = `${offsetFile}.tmp`
    const fd = Fs.openSync(tmp, "w", 0o600)
    try {
      Fs.writeSync(fd, `${offset}\n`)
      Fs.fsyncSync(fd)
    } finally {
      Fs.closeSync(fd)
    }
    Fs.renameSync(tmp, offsetFile)
    fsyncDir(dir)
  }
  const unreplayed = (): Array<Line> => {
    try {
      return linesAfter(Fs.readFileSync(file), readOffset())
    } catch {
      return []
    }
  }
  let pending = unreplayed().length

  const write: Spool["write"] = (stream, event, options) =>
    lock.withPermits(1)(
      Effect.sync(() => {
        const { type, data } = encodeEvent(event)
        const entry: Entry = {
          id: options.id ?? uuidv7(),
          stream,
          expectedVersion: options.expectedVersion,
          workspaceId: options.workspaceId,
          type,
          data,
          meta: encodeMeta(options.meta)
        }
        appendLine(dir, file, `${JSON.stringify(entry)}\n`)
        pending++
      })
    )

  const replayLine = (line: Line, replayed: number): Effect.Effect<void, SpoolError, EventLog> => {
    const stop = (reason: SpoolError["reason"], message: string, cause?: unknown) =>
      new SpoolError({ reason, file, line: line.number, replayed, message, cause })
    return Effect.gen(function*() {
      const parsed = parseEntry(line.text)
      if (Either.isLeft(parsed)) return yield* stop("Corrupt", parsed.left)
      const entry = parsed.right
      const log = yield* EventLog
      yield* log.append(entry.stream, [entry.event], replayAppendOptions(entry, entry.decodedMeta)).pipe(
        // Already there: an earlier replay (or the original append) committed and only its ack was lost.
        Effect.catchIf(alreadyAppended(entry), () => Effect.void),
        Effect.mapError((e) =>
          e instanceof EventLogError && e.reason === "Unavailable"
            ? stop("Unavailable", e.message, e)
            : stop("Refused", `the log refused ${entry.type} on ${entry.stream}: ${e.message}`, e)
        )
      )
    })
  }

  const replay: Spool["replay"] = lock.withPermits(1)(
    Effect.gen(function*() {
      let replayed = 0
      for (const line of unreplayed()) {
        yield* replayLine(line, replayed)
        writeOffset(line.end)
        pending = Math.max(0, pending - 1)
        replayed++
      }
      // Everything is in the log now (writers wait on the lock). The spool goes first: a crash between the two
      // leaves an offset without a spool, which `open` discards, never a spool whose offset points past new lines.
      Fs.rmSync(file, { force: true })
      fsyncDir(dir)
      Fs.rmSync(offsetFile, { force: true })
      pending = 0
      return replayed
    })
  )

  const pendingStreams = () =>
    new Set(unreplayed().flatMap((line) => Either.match(parseEntry(line.text), { onLeft: () => [], onRight: (e) => [e.stream] })))

  return { write, pending: () => pending, pendingStreams, replay } satisfies Spool
})

/** Prepares `dir` for appending: created (and made durable), a torn tail cut, a stale offset without a spool removed. */
const open = (dir: string, file: string, offsetFile: string): { readonly cut: number } => {
  if (!Fs.existsSync(dir)) {
    Fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
    fsyncDir(Path.dirname(dir))
  }
  if (!Fs.existsSync(file)) {
    Fs.rmSync(offsetFile, { force: true })
    return { cut: 0 }
  }
  return { cut: cutTornTail(file) }
}

/** Appends one line and fsyncs it; a failed write is cut back off so the next line never lands on a fragment. */
const appendLine = (dir: string, file: string, line: string) => {
  const created = !Fs.existsSync(file)
  const fd = Fs.openSync(file, "a", 0o600)
  const size = Fs.fstatSync(fd).size
  try {
    Fs.writeSync(fd, line)
    Fs.fsyncSync(fd)
  } catch (e) {
    Fs.ftruncateSync(fd, size)
    throw e
  } finally {
    Fs.closeSync(fd)
  }
  if (created) fsyncDir(dir)
}

/** A parsed, decoded entry. */
type Decoded = Entry & { readonly event: Event; readonly decodedMeta: EventMeta }

/** Parses and decodes one complete line, or says why it cannot be. */
const parseEntry = (text: string): Either.Either<Decoded, string> => {
  let entry: Entry
  try {
    entry = JSON.parse(text) as Entry
  } catch (e) {
    return Either.left(`a complete line is not JSON (${messageOf(e)}): the spool is corrupt`)
  }
  const event = decodeEventEither(entry.type, entry.data)
  const meta = decodeMeta(entry.meta)
  if (Either.isLeft(event) || Either.isLeft(meta)) {
    return Either.left(`an entry does not decode (${String(entry.type)} on ${String(entry.stream)})`)
  }
  return Either.right({ ...entry, event: event.right, decodedMeta: meta.right })
}

/** A version conflict that means the entry is already in the log: its stream went past the version it expected. */
const alreadyAppended = (entry: Entry) => (e: unknown): e is VersionConflict =>
  e instanceof VersionConflict &&
  (typeof entry.expectedVersion !== "number" || e.actual > entry.expectedVersion)

/** Options of `runReplayer`. */
export interface ReplayerOptions {
  /** How often a healthy replayer looks at the spool (default 500 ms). */
  readonly interval?: Duration.DurationInput
  /** Longest wait between attempts after failures (default 30 s). */
  readonly maxBackoff?: Duration.DurationInput
}

/**
 * Replays the spool while it has entries, for as long as the surrounding scope lives. A failed replay is logged (an
 * entry that is corrupt or refused loudly, as an error naming its line: the replay stays stopped there until someone
 * looks) and retried with exponential backoff, doubling from the interval up to the cap.
 */
export const runReplayer = (spool: Spool, options: ReplayerOptions = {}) => {
  const base = Duration.toMillis(options.interval ?? "500 millis")
  const cap = Duration.toMillis(options.maxBackoff ?? "30 seconds")
  const attempt = (delay: number) =>
    Effect.gen(function*() {
      if (spool.pending() === 0) return base
      const n = yield* spool.replay
      if (n > 0) yield* Effect.logInfo(`spool: appended ${n} spooled event(s) to the log`)
      return base
    }).pipe(
      Effect.catchAll((e) => Effect.as(logFailure(e, Math.min(cap, delay * 2)), Math.min(cap, delay * 2))),
      Effect.tap((next) => Effect.sleep(next))
    )
  return Effect.iterate(base, { while: () => true, body: attempt }).pipe(Effect.forkScoped)
}

const logFailure = (e: SpoolError, retryInMs: number) => {
  const where = `${e.file} line ${e.line}`
  if (e.reason === "Unavailable") {
    return Effect.logWarning(`spool: the event log is unreachable at ${where}; retrying in ${retryInMs} ms`, e.message)
  }
  return Effect.logError(
    `spool: REPLAY STOPPED at ${where} (${e.reason}): ${e.message}. Nothing after it is appended until this entry is ` +
      `appended or repaired by hand; retrying in ${retryInMs} ms`,
    e.cause
  )
}
