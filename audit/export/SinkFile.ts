/**
 * Line sinks: records appended to a file, one per line, fsync'd before a batch counts as accepted; or written to
 * standard output, accepted once the OS took them (and fsync'd too when stdout is a file).
 */
import { FileSystem } from "@effect/platform"
import { Effect, Layer } from "effect"
import * as Fs from "node:fs"
import { Sink, SinkError } from "./Sink.ts"

/** The bytes of a batch of lines; a record holding a newline is a formatter bug and dies rather than split a record. */
const lines = (records: ReadonlyArray<string>): Buffer => {
  for (const record of records) {
    if (record.includes("\n") || record.includes("\r")) throw new Error("an export record holds a raw newline")
  }
  return Buffer.from(records.length === 0 ? "" : records.join("\n") + "\n", "utf8")
}

/** Whether the file is not empty and its last byte is not a newline. */
const endsTorn = async (path: string): Promise<boolean> => {
  const handle = await Fs.promises.open(path, "r")
  try {
    const { size } = await handle.stat()
    if (size === 0) return false
    const last = Buffer.alloc(1)
    await handle.read(last, 0, 1, size - 1)
    return last[0] !== 0x0a
  } finally {
    await handle.close()
  }
}

/**
 * A sink appending to `path` (created with mode 0600 when missing; a torn last line left by a crash is ended first);
 * closed with the scope.
 */
export const makeFile = Effect.fn("SinkFile.makeFile")(function*(path: string) {
  const fs = yield* FileSystem.FileSystem
  const file = yield* fs.open(path, { flag: "a", mode: 0o600 }).pipe(
    Effect.mapError((cause) =>
      new SinkError({ reason: "Open", target: path, message: `cannot open ${path} for appending: ${cause.message}`, cause })
    )
  )
  // A crash mid-write can leave a torn last record: end its line, or the next record would be glued to it and lost.
  const torn = yield* Effect.tryPromise(() => endsTorn(path)).pipe(Effect.orElseSucceed(() => false))
  if (torn) {
    yield* file.writeAll(Buffer.from("\n")).pipe(
      Effect.mapError((cause) =>
        new SinkError({ reason: "Write", target: path, message: `cannot write to ${path}: ${cause.message}`, cause })
      )
    )
  }
  const lock = yield* Effect.makeSemaphore(1)
  const failed = (cause: { readonly message: string }) =>
    new SinkError({ reason: "Write", target: path, message: `cannot write to ${path}: ${cause.message}`, cause })
  return Sink.of({
    target: path,
    // Every accepted batch was fsync'd: nothing is left to confirm.
    confirm: Effect.void,
    write: (records) =>
      lock.withPermits(1)(
        Effect.suspend(() => {
          const bytes = lines(records)
          if (bytes.length === 0) return Effect.void
          return Effect.zipRight(file.writeAll(bytes), file.sync).pipe(Effect.mapError(failed))
        })
      )
  })
})

// fsync on a pipe, a terminal or a socket fails with one of these: there is nothing more to flush.
const NotSyncable = new Set(["EINVAL", "ENOTSUP", "EROFS", "EBADF"])

/**
 * A sink writing to a stream with a file descriptor (standard output by default): a batch is accepted when the stream
 * handed it to the OS and, if the descriptor is a file, fsync'd it. A closed pipe (`| head`) fails that write and every
 * later one; the stream's errors are caught for the life of the process, so they never crash it.
 */
export const makeStdout = (
  stream: NodeJS.WritableStream & { readonly fd?: number } = process.stdout,
  target = "stdout"
): Effect.Effect<Sink["Type"]> =>
  Effect.gen(function*() {
    const lock = yield* Effect.makeSemaphore(1)
    let broken: Error | undefined
    let pending: ((cause: Error) => void) | undefined
    // A closed pipe reports EPIPE as an 'error' event, not always through the write callback, sometimes more than once.
    yield* Effect.sync(() =>
      stream.on("error", (cause: Error) => {
        broken ??= cause
        pending?.(cause)
      })
    )
    const failure = (cause: Error) =>
      new SinkError({ reason: "Write", target, message: `cannot write to ${target}: ${cause.message}`, cause })
    return Sink.of({
      target,
      // Whoever reads stdout gives no receipt: handed to the OS is all that can be known.
      confirm: Effect.void,
      write: (records) =>
        lock.withPermits(1)(
          Effect.async<void, SinkError>((resume) => {
            const bytes = lines(records)
            if (broken !== undefined) return resume(Effect.fail(failure(broken)))
            if (bytes.length === 0) return resume(Effect.void)
            let done = false
            const finish = (cause?: Error) => {
              if (done) return
              done = true
              pending = undefined
              resume(cause === undefined ? Effect.void : Effect.fail(failure(cause)))
            }
            pending = finish
            stream.write(bytes, (error) => {
              if (error) return finish(error)
              if (stream.fd === undefined) return finish()
              Fs.fsync(stream.fd, (syncError) =>
                finish(syncError && !NotSyncable.has(syncError.code ?? "") ? syncError : undefined)
              )
            })
          })
        )
    })
  })

/** The file sink as the `Sink` service, the file closed with the layer. */
export const layerFile = (path: string): Layer.Layer<Sink, SinkError, FileSystem.FileSystem> =>
  Layer.scoped(Sink, makeFile(path))

/** Standard output as the `Sink` service. */
export const layerStdout: Layer.Layer<Sink> = Layer.effect(Sink, makeStdout())
