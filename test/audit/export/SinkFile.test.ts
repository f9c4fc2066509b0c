/**
 * The line sinks: a file is appended to, never truncated, one record per line, batches never interleave, and a
 * record counts as accepted only once it is on disk; standard output reports a closed pipe as an error.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { makeFile } from "../../../audit/export/SinkFile.ts"

const tempDir = () => Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-sink-"))

describe("file sink", () => {
  it.scoped("appends batches in order after what the file held, one record per line, created 0600", () =>
    Effect.gen(function*() {
      const dir = tempDir()
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
      const path = Path.join(tempDir(), "export.log")
      const sink = yield* makeFile(path)
      const batch = (name: string) => Array.from({ length: 2000 }, (_, i) => `${name}-${i}`.padEnd(200, "."))
      yield* Effect.all([sink.write(batch("a")), sink.write(batch("b")), sink.write(batch("c"))], { concurrency: "unbounded" })
      const lines = Fs.readFileSync(path, "utf8").trimEnd().split("\n")
      assert.strictEqual(lines.length, 6000)
      const runs = lines.map((l) => l[0]).filter((c, i, all) => i === 0 || c !== all[i - 1])
      assert.strictEqual(runs.length, 3, "each batch is one contiguous run")
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scoped("a file that cannot be opened is an Open error naming it", () =>
    Effect.gen(function*() {
      const path = Path.join(tempDir(), "missing-dir", "export.jsonl")
      const error = yield* Effect.flip(makeFile(path))
      assert.strictEqual(error.reason, "Open")
      assert.include(error.message, path)
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scoped("a record with a raw newline is a bug and writes nothing", () =>
    Effect.gen(function*() {
      const path = Path.join(tempDir(), "export.jsonl")
      const sink = yield* makeFile(path)
      const exit = yield* Effect.exit(sink.write(["ok", "split\nrecord"]))
      assert.isTrue(Exit.isFailure(exit) && Cause.isDie(exit.cause))
      assert.strictEqual(Fs.readFileSync(path, "utf8"), "")
    }).pipe(Effect.provide(NodeFileSystem.layer)))
})

const child = Path.join(import.meta.dirname, "StdoutSinkChild.ts")

/** Runs the child with stdout piped; `readStdout: false` closes our end of the pipe at once. */
const runChild = (args: ReadonlyArray<string>, readStdout: boolean) =>
  new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const proc = ChildProcess.spawn(process.execPath, ["--import", "tsx", child, ...args], {
      cwd: Path.resolve(import.meta.dirname, "..", "..", ".."),
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    if (readStdout) proc.stdout.on("data", (c: Buffer) => (stdout += c.toString()))
    else proc.stdout.destroy()
    proc.stderr.on("data", (c: Buffer) => (stderr += c.toString()))
    const timer = setTimeout(() => {
      proc.kill("SIGKILL")
      reject(new Error(`child did not exit within 30 s: ${stderr}`))
    }, 30_000)
    proc.on("exit", (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })

describe("stdout sink", () => {
  it.live("writes the batch to the pipe and then reports it accepted", () =>
    Effect.promise(async () => {
      const result = await runChild(["3", "5"], true)
      assert.strictEqual(result.stderr.trim(), "accepted")
      assert.strictEqual(result.stdout, "0:xxx\n1:xxx\n2:xxx\n")
      assert.strictEqual(result.code, 0)
    }))

  it.live("a closed pipe fails the write instead of counting the records as accepted", () =>
    Effect.promise(async () => {
      // 4 MB is far past a pipe's buffer, so the writes meet the closed reader.
      const result = await runChild(["4096", "1024"], false)
      assert.match(result.stderr, /failed Write: cannot write to stdout: .*EPIPE/)
      assert.strictEqual(result.code, 3)
    }))
})
