/**
 * The exporter on a real log: every event once, in position order, an unknown type raw; a second run resumes after
 * the cursor and exports only what came since (the first run's AuditRead included); a cursor whose hash the log does
 * not hold is refused; the cursor never moves past what the sink confirmed (a confirmation that fails, a real rsyslog
 * frozen with SIGSTOP).
 */
import { NodeFileSystem } from "@effect/platform-node"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Option, Ref, Schedule } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Cursor from "../../../audit/export/Cursor.ts"
import * as Exporter from "../../../audit/export/Exporter.ts"
import { Sink, SinkError } from "../../../audit/export/Sink.ts"
import { makeFile } from "../../../audit/export/SinkFile.ts"
import * as SinkSyslog from "../../../audit/export/SinkSyslog.ts"
import { EventLog } from "../../../core/EventLog.ts"
import { EventMeta, WorkspaceCreated } from "../../../core/Events.ts"
import { uuidv7, WorkspaceId } from "../../../core/Ids.ts"
import { appendForeign } from "../../support/ForeignEvent.ts"
import * as HubLog from "../../support/HubLog.ts"
import { type Rsyslog, startRsyslog } from "../../support/Rsyslog.ts"

const meta = new EventMeta({ actor: { kind: "admin" } })
const context = { productVersion: "0.1.0", hostname: "exporter.test" }

const appendMany = (n: number) =>
  Effect.flatMap(EventLog, (log) =>
    Effect.forEach(Array.from({ length: Math.ceil(n / 50) }), (_, i) =>
      log.append(`ws-${uuidv7()}`, Array.from({ length: Math.min(50, n - i * 50) }, (_, k) =>
        new WorkspaceCreated({ workspaceId: WorkspaceId.make(uuidv7()), name: `w${i * 50 + k}` })), {
        expectedVersion: "any",
        workspaceId: null,
        meta
      }), { discard: true }))

const tempDir = () => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-exporter-"))
  return Effect.as(Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))), dir)
}

const options = (cursor: string | undefined, batchSize = 100): Exporter.ExportOptions => ({
  format: "jsonl",
  framing: "line",
  context,
  cursor,
  follow: false,
  batchSize
})

/** One export run to `sink` as the command runs it: resume, run, record; returns what it delivered. */
const exportOnce = (sink: Sink["Type"], opts: Exporter.ExportOptions) =>
  Effect.gen(function*() {
    const after = yield* Exporter.resume(opts.cursor)
    const progress = yield* Ref.make(Exporter.initial)
    yield* Exporter.run(after, opts, progress).pipe(Effect.provideService(Sink, sink))
    const delivered = yield* Ref.get(progress)
    yield* Exporter.recordRead({ format: opts.format, sink: "file" }, delivered)
    return delivered
  })

const positionsIn = (path: string) =>
  Fs.readFileSync(path, "utf8").trim().split("\n").map((line) => JSON.parse(line) as { position: number; type: string; data: unknown })

describe("Exporter", () => {
  it.layer(HubLog.layer, { timeout: 120_000 })("on a real log", (it) => {
    it.scoped("exports every event once in order (an unknown type raw), resumes after its cursor, records each run", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir()
        const out = Path.join(dir, "export.jsonl")
        const cursor = Path.join(dir, "cursor")
        yield* appendMany(240)
        yield* appendForeign(`future-${uuidv7()}`, "ServiceTeleported", { to: "mars", "weird]|=\\": "x\ny" })
        yield* appendMany(10)
        const sink = yield* makeFile(out)
        const first = yield* exportOnce(sink, options(cursor))
        assert.deepStrictEqual(first, { count: 251, fromPosition: 1, toPosition: 251 })
        const lines = positionsIn(out)
        assert.deepStrictEqual(lines.map((l) => l.position), Array.from({ length: 251 }, (_, i) => i + 1))
        assert.deepStrictEqual(lines[240], { ...lines[240]!, type: "ServiceTeleported", data: { to: "mars", "weird]|=\\": "x\ny" } })
        const log = yield* EventLog
        const [at251] = yield* log.readLinks(250, 1)
        assert.deepStrictEqual(yield* Cursor.read(cursor), Option.some({ position: 251, hash: at251!.hash }))

        // The run's own AuditRead (position 252) and what came since are the next run's, and only they.
        yield* appendMany(3)
        const second = yield* exportOnce(sink, options(cursor))
        assert.deepStrictEqual(second, { count: 4, fromPosition: 252, toPosition: 255 })
        const again = positionsIn(out)
        assert.deepStrictEqual(again.map((l) => l.position), Array.from({ length: 255 }, (_, i) => i + 1))
        assert.deepStrictEqual(again[251], {
          ...again[251]!,
          type: "AuditRead",
          data: { kind: "export", count: 251, filters: { format: "jsonl", sink: "file" }, fromPosition: 1, toPosition: 251 }
        })
        // Nothing new but the second run's record: a third run exports just that.
        assert.deepStrictEqual(yield* exportOnce(sink, options(cursor)), { count: 1, fromPosition: 256, toPosition: 256 })
      }).pipe(Effect.provide(NodeFileSystem.layer)))

    it.scoped("refuses a cursor whose hash the log does not hold there, or that is past the log's end", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir()
        const cursor = Path.join(dir, "cursor")
        yield* appendMany(5)
        const head = yield* Effect.flatMap(EventLog, (log) => log.head)
        Fs.writeFileSync(cursor, Cursor.render({ position: 3, hash: "ab".repeat(32) }))
        const rewritten = yield* Effect.flip(Exporter.resume(cursor))
        assert.strictEqual(rewritten._tag, "ExportError")
        assert.match(rewritten.message, /stands at position 3, but the log holds another event there.*rewritten/)
        Fs.writeFileSync(cursor, Cursor.render({ position: head.position + 10, hash: "ab".repeat(32) }))
        const cut = yield* Effect.flip(Exporter.resume(cursor))
        assert.match(cut.message, new RegExp(`the log ends at position ${head.position}`))
      }))

    it.scoped("the cursor never moves past a batch the sink did not confirm", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir()
        const cursor = Path.join(dir, "cursor")
        yield* appendMany(50)
        const file = yield* makeFile(Path.join(dir, "export.jsonl"))
        let confirmations = 0
        // A real file sink whose third confirmation fails, as a syslog server that died before reading would.
        const sink = Sink.of({
          ...file,
          confirm: Effect.suspend(() =>
            ++confirmations === 3 ? Effect.fail(new SinkError({ reason: "Write", target: "test", message: "lost" })) : Effect.void)
        })
        const progress = yield* Ref.make(Exporter.initial)
        const error = yield* Effect.flip(Exporter.run(0, options(cursor, 10), progress).pipe(Effect.provideService(Sink, sink)))
        assert.strictEqual(error._tag, "SinkError")
        assert.deepStrictEqual(yield* Ref.get(progress), { count: 20, fromPosition: 1, toPosition: 20 })
        assert.strictEqual(Option.getOrThrow(yield* Cursor.read(cursor)).position, 20)
        // The next run resumes after 20: batch 21-30 is sent again, nothing is lost.
        assert.strictEqual(yield* Exporter.resume(cursor), 20)
      }).pipe(Effect.provide(NodeFileSystem.layer)))
  })

  describe("to a real rsyslog", () => {
    let rsyslog: Rsyslog
    beforeAll(async () => {
      rsyslog = await startRsyslog()
    }, 660_000)
    afterAll(async () => {
      await rsyslog?.stop()
    }, 30_000)

    // The live clock: the sink's timeouts and retries run in real time.
    describe("frozen with SIGSTOP", () => {
      it.live("the cursor does not move while rsyslogd reads nothing, and catches up once it reads again", () =>
        Effect.gen(function*() {
          const dir = yield* tempDir()
          const cursor = Path.join(dir, "cursor")
          yield* appendMany(300)
          const sink = yield* SinkSyslog.make(`tcp://127.0.0.1:${rsyslog.port}`, {
            reconnect: Schedule.spaced(Duration.millis(200)).pipe(Schedule.intersect(Schedule.recurs(50)))
          })
          yield* Effect.promise(() => rsyslog.freeze())
          // Whatever the outcome, rsyslogd reads again before the sink closes (a stopped daemon would hold it 30 s).
          yield* Effect.addFinalizer(() => Effect.sync(() => process.kill(rsyslog.pid(), "SIGCONT")))
          const progress = yield* Ref.make(Exporter.initial)
          const fiber = yield* Effect.fork(
            Exporter.run(0, { ...options(cursor, 100), format: "syslog", framing: "syslog" }, progress).pipe(
              Effect.provideService(Sink, sink)
            )
          )
          yield* Effect.sleep(Duration.seconds(3))
          // The kernel took the first batch; rsyslogd did not read it, so the sink could not confirm it.
          assert.isTrue(Option.isNone(yield* Cursor.read(cursor)), "no cursor while nothing is confirmed")
          assert.strictEqual((yield* Ref.get(progress)).count, 0)
          process.kill(rsyslog.pid(), "SIGCONT")
          yield* Fiber.join(fiber)
          const head = yield* Effect.flatMap(EventLog, (log) => log.head)
          assert.strictEqual(Option.getOrThrow(yield* Cursor.read(cursor)).position, head.position)
          const lines = yield* Effect.promise(() => rsyslog.waitForLines(head.position))
          const positions = new Set(lines.map((l) => Number(/ position="(\d+)"/.exec(l)![1])))
          assert.strictEqual(positions.size, head.position)
        }).pipe(Effect.scoped, Effect.provide(HubLog.layer)), 120_000)
    })
  })
})
