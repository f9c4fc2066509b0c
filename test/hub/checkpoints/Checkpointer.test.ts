/**
 * The hub's checkpoints on a memory log, its clock moved by the test: the key made once (0600) and recorded once, a
 * note after N events or after the interval (never for our own event alone), the note signed over the head's stored
 * hash, handed to the operator's command (whose failure does not stop the next), and one more at shutdown.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Exit, Layer, Option, Scope, TestClock } from "effect"
import * as CheckpointNote from "../../../core/CheckpointNote.ts"
import { EventLog } from "../../../core/EventLog.ts"
import { EventMeta, WorkspaceCreated } from "../../../core/Events.ts"
import { uuidv7, WorkspaceId } from "../../../core/Ids.ts"
import * as MemoryEventLog from "../../../core/MemoryEventLog.ts"
import * as SignedNote from "../../../core/SignedNote.ts"
import * as SigningKeys from "../../../core/SigningKeys.ts"
import * as Checkpointer from "../../../hub/checkpoints/Checkpointer.ts"
import * as KeyFile from "../../../hub/checkpoints/KeyFile.ts"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-checkpoints-"))),
  (d) => Effect.sync(() => Fs.rmSync(d, { recursive: true, force: true }))
)

const append = (n: number) =>
  Effect.flatMap(EventLog, (log) =>
    Effect.forEach(Array.from({ length: n }), () =>
      log.append("w", [new WorkspaceCreated({ workspaceId: WorkspaceId.make(uuidv7()), name: "w" })], {
        expectedVersion: "any",
        workspaceId: null,
        meta: new EventMeta({ actor: { kind: "admin" } })
      })))

/** Waits in real time (the checkpoint command is a real process) until `f` holds. */
const until = (f: () => boolean, ms = 20_000) =>
  Effect.promise(async () => {
    const end = Date.now() + ms
    while (!f() && Date.now() < end) await new Promise((r) => setTimeout(r, 20))
    return f()
  })

const notes = (dir: string) => {
  try {
    return Fs.readdirSync(Checkpointer.notesDir(dir)).sort((a, b) => parseInt(a) - parseInt(b))
  } catch {
    return []
  }
}

const settings = { every: 3, intervalMs: 60_000, origin: "test.example/connect" }

/** Starts the checkpointer on the log in a scope of its own; returns the scope to close (a clean shutdown). */
const start = (dataDir: string, s: Checkpointer.CheckpointSettings = settings) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    yield* Layer.buildWithScope(Checkpointer.layer(s, dataDir).pipe(Layer.provide(KeyFile.layer(dataDir))), scope)
    return scope
  })

const events = Effect.flatMap(EventLog, (log) => log.readAll(0, 1000))

describe("Checkpointer", () => {
  it("is due after N events or the interval, never for its own checkpoint event alone", () => {
    const at = (head: number, elapsedMs: number) => Checkpointer.isDue({ head, lastEvent: 10, elapsedMs, every: 3, intervalMs: 1000 })
    expect([at(10, 5000), at(12, 0), at(13, 0), at(11, 999), at(11, 1000)]).toEqual([false, false, true, false, true])
  })

  it("reads --checkpoint-interval from 1s to 24h", () => {
    expect(["30s", "5m", "1h", "1000ms", "24h"].map((t) => Either.getOrUndefined(Checkpointer.parseInterval(t)))).toEqual([30_000, 300_000, 3_600_000, 1_000, 86_400_000])
    for (const bad of ["500ms", "25h", "5x", "", "-1m", "1.5m"]) expect(Either.isLeft(Checkpointer.parseInterval(bad)), bad).toBe(true)
  })

  it.scoped("makes the key once (0600), records it once, and signs the head after N events", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const first = yield* start(dir)
      const keyFile = Path.join(dir, KeyFile.FILE)
      expect(Fs.statSync(keyFile).mode & 0o777).toBe(0o600)
      const [recorded] = yield* events
      expect(recorded!.event).toMatchObject({ _tag: "SigningKeyRotated", origin: settings.origin })
      expect(recorded!.event).not.toHaveProperty("previousKeyId")
      // Closed cleanly with the key's event unsigned: one checkpoint at shutdown.
      yield* Scope.close(first, Exit.void)
      expect(notes(dir)).toEqual(["1.note"])
      // A restart on the same data: the same key, not recorded again; counting from the last checkpoint's event.
      yield* start(dir)
      expect((yield* events).map((e) => e.event._tag)).toEqual(["SigningKeyRotated", "CheckpointSigned"])
      yield* append(2)
      yield* TestClock.adjust("2 seconds")
      expect(notes(dir)).toEqual(["1.note"])
      yield* append(1)
      yield* TestClock.adjust("1 second")
      expect(yield* until(() => notes(dir).length === 2)).toBe(true)
      expect(notes(dir)).toEqual(["1.note", "5.note"])

      const ring = Option.getOrThrow(yield* KeyFile.make(dir).read)
      const note = Fs.readFileSync(Path.join(Checkpointer.notesDir(dir), "5.note"), "utf8")
      const opened = Either.getOrThrow(SignedNote.open(note, ring.keys.map(SigningKeys.verifierOf)))
      const all = yield* events
      expect(Either.getOrThrow(CheckpointNote.parse(opened.text))).toEqual({
        origin: settings.origin,
        position: 5,
        headHash: Buffer.from(all[4]!.hash).toString("hex")
      })
      expect(all[5]!.event).toMatchObject({ _tag: "CheckpointSigned", position: 5, keyId: ring.keys[0]!.keyId })
      // The key file holds the private key; the note and the event never do.
      expect(note).not.toContain(JSON.parse(Fs.readFileSync(keyFile, "utf8")).keys[0].seed)
    }).pipe(Effect.provide(MemoryEventLog.layer)))

  it.scoped("signs after the interval when fewer than N events came, and once more at shutdown", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const scope = yield* start(dir, { ...settings, every: 100, intervalMs: 5 * 60_000 })
      yield* append(1)
      yield* TestClock.adjust("4 minutes")
      expect(notes(dir)).toEqual([])
      yield* TestClock.adjust("1 minute")
      expect(yield* until(() => notes(dir).length === 1)).toBe(true)
      // Only our own CheckpointSigned since: nothing to sign, at the interval or at shutdown.
      yield* TestClock.adjust("10 minutes")
      yield* append(1)
      yield* Scope.close(scope, Exit.void)
      expect(notes(dir)).toEqual(["2.note", "4.note"])
      const closed = yield* start(dir, { ...settings, every: 100 })
      yield* Scope.close(closed, Exit.void)
      expect(notes(dir)).toEqual(["2.note", "4.note"])
    }).pipe(Effect.provide(MemoryEventLog.layer)))

  it.scoped("hands each note to the command on stdin with its path; a failing command does not stop the next", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const copy = Path.join(dir, "copy")
      const command = `if [ -e ${dir}/fail ]; then touch ${dir}/failed.$CONNECT_CHECKPOINT_POSITION; echo nope >&2; exit 7; fi; cat > ${copy}.$CONNECT_CHECKPOINT_POSITION; echo "$CONNECT_CHECKPOINT_FILE" > ${copy}.path; echo "[$DATABASE_URL]" > ${copy}.db`
      // The command copies a note: it is not given the database's credentials.
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          const old = process.env.DATABASE_URL
          process.env.DATABASE_URL = "postgres://secret@127.0.0.1/db"
          return old
        }),
        (old) => Effect.sync(() => (old === undefined ? delete process.env.DATABASE_URL : (process.env.DATABASE_URL = old)))
      )
      yield* start(dir, { ...settings, command })
      Fs.writeFileSync(Path.join(dir, "fail"), "")
      yield* append(3)
      yield* TestClock.adjust("1 second")
      expect(yield* until(() => notes(dir).length === 1)).toBe(true)
      // The note is written before its command runs: wait for that run to fail before letting the next one pass.
      expect(yield* until(() => Fs.existsSync(Path.join(dir, "failed.4")))).toBe(true)
      Fs.rmSync(Path.join(dir, "fail"))
      yield* append(3)
      yield* TestClock.adjust("1 second")
      // copy.db is the command's last write: once it holds its line, the files before it are whole.
      expect(yield* until(() => Fs.existsSync(`${copy}.db`) && Fs.readFileSync(`${copy}.db`, "utf8").endsWith("\n"))).toBe(true)
      const path = Path.join(Checkpointer.notesDir(dir), "8.note")
      expect(Fs.readFileSync(`${copy}.path`, "utf8").trim()).toBe(path)
      expect(Fs.readFileSync(`${copy}.8`, "utf8")).toBe(Fs.readFileSync(path, "utf8"))
      expect(Fs.existsSync(`${copy}.4`)).toBe(false)
      expect(Fs.readFileSync(`${copy}.db`, "utf8")).toBe("[]\n")
    }).pipe(Effect.provide(MemoryEventLog.layer)))

  it.scoped("a command that hangs is killed after a minute, and the next checkpoint comes as usual", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const ran = Path.join(dir, "ran")
      const stop = Path.join(dir, "stop")
      const command = `echo $$ > ${ran}.$CONNECT_CHECKPOINT_POSITION; [ -e ${stop} ] || exec sleep 30`
      const scope = yield* start(dir, { ...settings, command })
      yield* append(3)
      yield* TestClock.adjust("1 second")
      expect(yield* until(() => Fs.existsSync(`${ran}.4`) && Fs.readFileSync(`${ran}.4`, "utf8").endsWith("\n"))).toBe(true)
      const pid = Number(Fs.readFileSync(`${ran}.4`, "utf8"))
      const alive = () => {
        try {
          process.kill(pid, 0)
          return true
        } catch {
          return false
        }
      }
      expect(alive()).toBe(true)
      yield* TestClock.adjust("61 seconds")
      expect(yield* until(() => !alive(), 10_000)).toBe(true)
      yield* append(3)
      yield* TestClock.adjust("1 second")
      expect(yield* until(() => notes(dir).length === 2, 10_000)).toBe(true)
      // The second command sleeps too: stop it once it has written its pid, then the checkpointer (whose note at
      // shutdown runs the command once more, told by `stop` not to sleep), before the directory is removed (ran.8
      // was written there while the directory went, and the command outlived the test by 30 s).
      expect(yield* until(() => Fs.existsSync(`${ran}.8`) && Fs.readFileSync(`${ran}.8`, "utf8").endsWith("\n"))).toBe(true)
      Fs.writeFileSync(stop, "")
      process.kill(Number(Fs.readFileSync(`${ran}.8`, "utf8")), "SIGKILL")
      yield* Scope.close(scope, Exit.void)
    }).pipe(Effect.provide(MemoryEventLog.layer)))
})
