/**
 * The signing key store as a file in the hub's data directory, `checkpoint-keys.json` (0600): made once at the first
 * start (written aside, fsynced, hard-linked into place so two processes agree on one ring), replaced atomically
 * (rename) on rotation. Also the atomic file write the checkpoint notes use.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { Effect, Layer, Option } from "effect"
import { messageOf } from "../../core/ErrorMessage.ts"
import * as SigningKeys from "../../core/SigningKeys.ts"

/** Name of the key file in the data directory. */
export const FILE = "checkpoint-keys.json"

/** A key file is a few hundred bytes per key; anything over this is not ours. */
const MAX_FILE_BYTES = 1024 * 1024

const fsync = (path: string) => {
  const fd = Fs.openSync(path, "r")
  try {
    Fs.fsyncSync(fd)
  } finally {
    Fs.closeSync(fd)
  }
}

const tmpPath = (path: string) => `${path}.${process.pid}.${Date.now()}.tmp`

/**
 * Writes `data` to `path` so that a reader sees the old file or the new one, never a part: written aside with `mode`,
 * fsynced, renamed over `path`, the directory fsynced.
 */
export const writeAtomic = (path: string, data: string, mode: number): void => {
  const tmp = tmpPath(path)
  try {
    Fs.writeFileSync(tmp, data, { mode, flag: "wx" })
    fsync(tmp)
    Fs.renameSync(tmp, path)
    fsync(Path.dirname(path))
  } finally {
    Fs.rmSync(tmp, { force: true })
  }
}

/** Creates `path` holding `data` unless it exists (hard link: fails if another process got there first). */
const createOnce = (path: string, data: string) => {
  const tmp = tmpPath(path)
  try {
    Fs.writeFileSync(tmp, data, { mode: 0o600, flag: "wx" })
    fsync(tmp)
    Fs.linkSync(tmp, path)
    fsync(Path.dirname(path))
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e
  } finally {
    Fs.rmSync(tmp, { force: true })
  }
}

const failure = (reason: "Read" | "Write", path: string, cause: unknown) =>
  new SigningKeys.SigningKeyError({ reason, message: `cannot ${reason === "Read" ? "read" : "write"} the signing keys at ${path}: ${messageOf(cause)}` })

/** The key store of the hub whose data directory is `dataDir`. */
export const make = (dataDir: string): SigningKeys.SigningKeyStore["Type"] => {
  const path = Path.join(dataDir, FILE)
  const read = Effect.try({
    try: () => {
      if (!Fs.existsSync(path)) return undefined
      if (Fs.statSync(path).size > MAX_FILE_BYTES) throw new Error(`the file is over ${MAX_FILE_BYTES} bytes`)
      return Fs.readFileSync(path, "utf8")
    },
    catch: (cause) => failure("Read", path, cause)
  }).pipe(
    Effect.flatMap((text) =>
      text === undefined ? Effect.succeed(Option.none()) : Effect.map(SigningKeys.decodeFile(text, path), Option.some)
    )
  )
  const present = read.pipe(
    Effect.flatMap(Option.match({
      onNone: () => Effect.fail(new SigningKeys.SigningKeyError({ reason: "Missing", message: `no signing key at ${path}: start the hub once to make one` })),
      onSome: Effect.succeed
    }))
  )
  return SigningKeys.SigningKeyStore.of({
    path,
    read,
    ensure: (name) =>
      Effect.try({
        try: () => {
          Fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 })
          if (!Fs.existsSync(path)) createOnce(path, SigningKeys.encodeFile(SigningKeys.createRing(name, new Date())))
        },
        catch: (cause) => failure("Write", path, cause)
      }).pipe(Effect.zipRight(present)),
    rotate: (name) =>
      Effect.gen(function*() {
        const rotated = SigningKeys.rotate(yield* present, name, new Date())
        yield* Effect.try({
          try: () => writeAtomic(path, SigningKeys.encodeFile(rotated.ring), 0o600),
          catch: (cause) => failure("Write", path, cause)
        })
        return { key: rotated.key, previous: rotated.previous }
      })
  })
}

/** The key store of `dataDir` as a layer. */
export const layer = (dataDir: string) => Layer.succeed(SigningKeys.SigningKeyStore, make(dataDir))
