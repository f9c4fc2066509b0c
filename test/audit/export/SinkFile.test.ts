/**
 * The line sinks: a file is appended to, never truncated, one record per line, batches never interleave, and a
 * record counts as accepted only once it is on disk; the stdout sink, over a real pipe, reports a closed pipe as an
 * error.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { makeFile, makeStdout } from "../../../audit/export/SinkFile.ts"

/** A temporary directory removed when the test's scope closes. */
const tempDir = () => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-sink-"))
  return Effect.as(Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))), dir)
}

describe("file sink", () => {
  it.scoped("appends batches in order after what the file held, one record per line, created 0600", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const path = Path.join(dir, "export.jsonl")
      const sink = yield* makeFile(path)
      yield* sink.write(["a", "b"])
      // Accepted means written: the bytes are in the file the moment write returns.
      assert.strictEqual(Fs.readFileSync(path, "utf8"), "a\nb\n")
      assert.strictEqual(Fs.statSync(path).mode & 0o777, 0o600)
      yield* sink.write([])
      yield* sink.write(["ü ☃"])
      assert.strictEqual(Fs.readFileSync(path, "utf8"), "a\nb\nü ☃\n")

      const again = yield* makeFile(path)
      yield* again.write(["c"])
      assert.strictEqual(Fs.readFileSync(path, "utf8"), "a\nb\nü ☃\nc\n")
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scoped("concurrent writes never interleave their batches", () =>
    Effect.gen(function*() {
      const path = Path.join(yield* tempDir(), "export.log")
      const sink = yield* makeFile(path)
      const batch = (name: string) => Array.from({ length: 2000 }, (_, i) => `${name}-${i}`.padEnd(200, "."))
      yield* Effect.all([sink.write(batch("a")), sink.write(batch("b")), sink.write(batch("c"))], { concurrency: "unbounded" })
      const lines = Fs.readFileSync(path, "utf8").trimEnd().split("\n")
      assert.strictEqual(lines.length, 6000)
      const runs = lines.map((l) => l[0]).filter((c, i, all) => i === 0 || c !== all[i - 1])
      assert.strictEqual(runs.length, 3, "each batch is one contiguous run")
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scoped("a record torn by a crash stays alone on its line: the next record is not glued to it", () =>
    Effect.gen(function*() {
      const path = Path.join(yield* tempDir(), "export.jsonl")
      Fs.writeFileSync(path, '{"position":1}\n{"posit')
      const sink = yield* makeFile(path)
      yield* sink.write(['{"position":2}'])
      assert.strictEqual(Fs.readFileSync(path, "utf8"), '{"position":1}\n{"posit\n{"position":2}\n')
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scoped("a file that cannot be opened is an Open error naming it", () =>
    Effect.gen(function*() {
      const path = Path.join(yield* tempDir(), "missing-dir", "export.jsonl")
      const error = yield* Effect.flip(makeFile(path))
      assert.strictEqual(error.reason, "Open")
      assert.include(error.message, path)
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scoped("a record with a raw newline is a bug and writes nothing", () =>
    Effect.gen(function*() {
      const path = Path.join(yield* tempDir(), "export.jsonl")
      const sink = yield* makeFile(path)
      const exit = yield* Effect.exit(sink.write(["ok", "split\nrecord"]))
      assert.isTrue(Exit.isFailure(exit) && Cause.isDie(exit.cause))
      assert.strictEqual(Fs.readFileSync(path, "utf8"), "")
    }).pipe(Effect.provide(NodeFileSystem.layer)))
})

/** Spawns `command` with its stdin a pipe from us (what stdout is when the export is piped into a command). */
const piped = (command: string, args: ReadonlyArray<string> = []) => {
  const proc = ChildProcess.spawn(command, args, { stdio: ["pipe", "pipe", "ignore"] })
  let out = ""
  proc.stdout.on("data", (c: Buffer) => (out += c.toString()))
  const exited = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${command} did not exit within 30 s`)), 30_000)
    proc.on("exit", () => {
      clearTimeout(timer)
      resolve()
    })
  })
  return { proc, output: () => out, exited }
}

describe("stdout sink (the standard-output sink over a pipe)", () => {
  it.live("writes each batch into the pipe before it reports it accepted", () =>
    Effect.gen(function*() {
      const cat = piped("cat")
      const sink = yield* makeStdout(cat.proc.stdin, "pipe")
      yield* sink.write(["0:xxx", "1:xxx"])
      yield* sink.write(["2:xxx"])
      yield* sink.confirm
      cat.proc.stdin.end()
      yield* Effect.promise(() => cat.exited)
      assert.strictEqual(cat.output(), "0:xxx\n1:xxx\n2:xxx\n")
    }))

  it.live("a pipe whose reader is gone fails the write, and every later one, instead of counting them as accepted", () =>
    Effect.gen(function*() {
      // `head -c 1` reads one byte and exits, like `connect audit export | head -1`.
      const head = piped("head", ["-c", "1"])
      const sink = yield* makeStdout(head.proc.stdin, "pipe")
      // 4 MB is far past a pipe's buffer, so the writes meet the closed reader.
      const batch = Array.from({ length: 4096 }, (_, i) => `${i}:`.padEnd(1024, "x"))
      const error = yield* Effect.flip(sink.write(batch))
      assert.strictEqual(error.reason, "Write")
      assert.match(error.message, /^cannot write to pipe: /)
      yield* Effect.promise(() => head.exited)
      assert.strictEqual(head.output(), "0")
      const again = yield* Effect.flip(sink.write(["more"]))
      assert.strictEqual(again.reason, "Write")
    }))
})
