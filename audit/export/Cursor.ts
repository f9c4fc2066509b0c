/**
 * The export cursor: the position of the last event a sink confirmed and that event's hash, kept in a small file that
 * is replaced atomically (temporary file, fsync, rename, fsync of the directory), so after a crash it holds either the
 * previous cursor or the new one, never half of either. Reading it trusts nothing: a file that is not one is refused
 * with a line saying so.
 */
import { Effect, Either, Option, Schema } from "effect"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"

/** Where an export stands: the last position the sink confirmed and the hash the log holds there (hex). */
export interface Cursor {
  readonly position: number
  readonly hash: string
}

/** The cursor file could not be read, is not a cursor, or could not be written. */
export class CursorError extends Schema.TaggedError<CursorError>()("CursorError", {
  reason: Schema.Literal("Read", "Invalid", "Write"),
  path: Schema.String,
  message: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {}

// A cursor is under 100 bytes; anything much larger is not one, and is not read into memory to find that out.
const MAX_BYTES = 4096

const CursorFile = Schema.Struct({
  position: Schema.Int.pipe(Schema.nonNegative(), Schema.lessThanOrEqualTo(Number.MAX_SAFE_INTEGER)),
  hash: Schema.String.pipe(Schema.pattern(/^[0-9a-f]{64}$/))
})

const decode = Schema.decodeUnknownEither(CursorFile)

/** The cursor a file's text holds, or why it holds none (never echoing the text, which may be anything). */
export const parse = (text: string): Either.Either<Cursor, string> => {
  const expected = `expected {"position":N,"hash":"64 hex digits"}`
  if (text.trim() === "") return Either.left(`it is empty (${expected})`)
  if (text.includes("\u0000")) return Either.left(`it holds NUL bytes: not a cursor file (${expected})`)
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return Either.left(`it is not JSON (${expected})`)
  }
  const decoded = decode(json)
  if (decoded._tag === "Left") {
    return Either.left(`it is not a cursor: position must be a whole number ≥ 0 and hash 64 lowercase hex digits (${expected})`)
  }
  return Either.right({ position: decoded.right.position, hash: decoded.right.hash })
}

/** The text of a cursor file: one JSON line. */
export const render = (cursor: Cursor): string => JSON.stringify({ position: cursor.position, hash: cursor.hash }) + "\n"

const errno = (cause: unknown) => (cause as NodeJS.ErrnoException).code

/** Fails unless a cursor file can be created at `path`: found at the start rather than after the first batch was sent. */
const creatable = (path: string) =>
  Effect.tryPromise({
    try: () => Fs.access(Path.dirname(Path.resolve(path)), Fs.constants.W_OK),
    catch: (cause) =>
      new CursorError({ reason: "Write", path, message: `cannot create cursor file ${path}: ${(cause as Error).message}`, cause })
  })

/** The cursor in `path`; none when the file does not exist (an export that starts at the beginning). */
export const read = Effect.fn("Cursor.read")(function*(path: string) {
  const fail = (reason: CursorError["reason"], why: string, cause?: unknown) =>
    new CursorError({ reason, path, message: `cursor file ${path}: ${why}`, cause })
  const text = yield* Effect.tryPromise({
    try: async () => {
      const file = await Fs.open(path, "r")
      try {
        const stat = await file.stat()
        if (!stat.isFile()) return { notFile: true as const }
        if (stat.size > MAX_BYTES) return { size: stat.size }
        const buffer = Buffer.alloc(MAX_BYTES + 1)
        const { bytesRead } = await file.read(buffer, 0, buffer.length, 0)
        return bytesRead > MAX_BYTES ? { size: bytesRead } : { text: buffer.subarray(0, bytesRead).toString("utf8") }
      } finally {
        await file.close()
      }
    },
    catch: (cause) => cause
  }).pipe(
    Effect.map(Option.some),
    Effect.catchAll((cause) =>
      errno(cause) === "ENOENT"
        ? creatable(path).pipe(Effect.as(Option.none()))
        : Effect.fail(fail("Read", `cannot read it: ${(cause as Error).message}`, cause))
    )
  )
  if (Option.isNone(text)) return Option.none<Cursor>()
  const got = text.value
  if ("notFile" in got) return yield* fail("Invalid", "it is not a regular file")
  if ("size" in got) return yield* fail("Invalid", `it holds over ${MAX_BYTES} bytes: not a cursor file`)
  const parsed = parse(got.text)
  if (Either.isLeft(parsed)) return yield* fail("Invalid", `${parsed.left}; fix or delete it (deleting it exports from the start)`)
  return Option.some(parsed.right)
})

/**
 * Replaces the cursor in `path` atomically: written to `path.tmp`, fsync'd, renamed over `path`, and the directory
 * fsync'd so that the rename itself survives a power loss. A crash at any point leaves the old cursor or the new one.
 */
export const write = Effect.fn("Cursor.write")(function*(path: string, cursor: Cursor) {
  const temporary = `${path}.tmp`
  yield* Effect.tryPromise({
    try: async () => {
      // Removed, then created exclusively: O_EXCL never follows a link someone put at that name (a stale temporary
      // of a crash goes the same way); losing that race fails this write, it never writes elsewhere.
      await Fs.rm(temporary, { force: true })
      const file = await Fs.open(temporary, "wx", 0o600)
      try {
        await file.writeFile(render(cursor), "utf8")
        await file.sync()
      } finally {
        await file.close()
      }
      await Fs.rename(temporary, path)
      const dir = await Fs.open(Path.dirname(Path.resolve(path)), "r")
      try {
        await dir.sync()
      } finally {
        await dir.close()
      }
    },
    catch: (cause) =>
      new CursorError({ reason: "Write", path, message: `cannot write cursor file ${path}: ${(cause as Error).message}`, cause })
  })
})
