/**
 * The export against a real rsyslog (the Debian package, installed when missing): a few hundred records of every
 * format go through the TCP syslog sink to an rsyslogd of the test's own, and its output file holds every record
 * exactly once, byte for byte as sent and parseable in its format. Then rsyslogd is frozen and killed mid-export,
 * losing what its kernel had taken, and started again: once the sink confirms, the union of what it wrote has every
 * record (duplicates only by event id).
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Schedule } from "effect"
import type { StoredEvent } from "../../../core/EventLog.ts"
import { eventTypes } from "../../../core/Events.ts"
import { type Format, Formats, syslogRecord } from "../../../audit/export/Format.ts"
import { make } from "../../../audit/export/SinkSyslog.ts"
import { type Rsyslog, startRsyslog } from "../../support/Rsyslog.ts"
import { parse5424, parseCef } from "./Parsers.ts"
import { chain, samples, type Unchained } from "./Samples.ts"

const context = { productVersion: "0.1.0", hostname: "exporter.example" }
const COUNT = 300

/** COUNT events cycling through the catalog, some with hostile text and one with a 256 KB value, chained. */
const events = (): Array<StoredEvent> => {
  const hostile = ['quote " bracket ] pipe | equals = backslash \\', "line\nbreak\r\nand\ttab", "Zürich ☃ 😀", "x".repeat(256 * 1024)]
  const unchained: Array<Unchained> = Array.from({ length: COUNT }, (_, i) => {
    const type = eventTypes[i % eventTypes.length]!
    const sample = samples[type]
    const data = type === "AgentTokenRevoked" ? { ...sample.data, reason: hostile[Math.floor(i / eventTypes.length) % hostile.length] } : sample.data
    return {
      stream: sample.stream,
      version: i + 1,
      workspaceId: sample.workspace,
      type,
      data,
      meta: sample.meta,
      recordedAt: new Date(Date.UTC(2025, 2, 1, 14, 0, 0, i))
    }
  })
  return chain(unchained)
}

/** The event id a received line carries, read from its structured data and, independently, from its MSG. */
const idsOf = (format: Format, line: string) => {
  const message = parse5424(line)
  const sdId = message.sd[0]!.params.id!
  let bodyId: string
  if (format === "cef") bodyId = parseCef(message.msg).extension.externalId!
  else {
    const body = JSON.parse(message.msg)
    bodyId = format === "ecs" ? body.event.id : format === "ocsf" ? body.metadata.uid : body.id
  }
  return { sdId, bodyId }
}

const sendAll = (rsyslog: Rsyslog, records: ReadonlyArray<string>, between?: (batch: number) => Effect.Effect<void>) =>
  Effect.scoped(
    Effect.gen(function*() {
      const sink = yield* make(`tcp://127.0.0.1:${rsyslog.port}`, {
        reconnect: Schedule.spaced(Duration.millis(250)).pipe(Schedule.intersect(Schedule.recurs(80)))
      })
      for (let i = 0; i < records.length; i += 25) {
        yield* sink.write(records.slice(i, i + 25))
        if (between) yield* between(i / 25)
      }
      yield* sink.confirm
    })
  )

describe("export to a real rsyslog over TCP", () => {
  let rsyslog: Rsyslog
  const stored = events()

  beforeAll(async () => {
    rsyslog = await startRsyslog()
  }, 660_000)

  afterAll(async () => {
    await rsyslog?.stop()
  }, 30_000)

  for (const format of Formats) {
    it.live(`${format}: ${COUNT} records, each written once, byte for byte, parseable`, () =>
      Effect.gen(function*() {
        const before = rsyslog.lines().length
        const records = stored.map((e) => syslogRecord(format, e, context))
        yield* sendAll(rsyslog, records)
        const lines = (yield* Effect.promise(() => rsyslog.waitForLines(before + COUNT))).slice(before)
        // rsyslog may still be writing: give it a moment to show a duplicate if there were one.
        yield* Effect.sleep(Duration.millis(300))
        assert.strictEqual(rsyslog.lines().length, before + COUNT, "no record twice")
        assert.deepStrictEqual(lines, records, "every record as sent, in order")
        const ids = lines.map((line) => idsOf(format, line))
        for (const { sdId, bodyId } of ids) assert.strictEqual(sdId, bodyId)
        assert.deepStrictEqual(ids.map((i) => i.sdId), stored.map((e) => e.id))
      }), 120_000)
  }

  it.live("rsyslogd frozen, then killed mid-export, then started again: every record arrives, duplicates only by id", () =>
    Effect.gen(function*() {
      const before = rsyslog.lines().length
      const records = stored.map((e) => syslogRecord("syslog", e, context))
      // While it is frozen the kernel still takes what the sink writes, and the kill throws that away: only the
      // records the sink keeps until it confirms bring those back.
      const outage = Effect.promise(async () => {
        await new Promise((resolve) => setTimeout(resolve, 1000))
        await rsyslog.crash()
        await new Promise((resolve) => setTimeout(resolve, 500))
        await rsyslog.restart()
      })
      let outageFiber: Fiber.RuntimeFiber<void> | undefined
      yield* sendAll(rsyslog, records, (batch) =>
        batch === 4
          ? Effect.promise(() => rsyslog.freeze()).pipe(
            Effect.zipRight(Effect.fork(outage)),
            Effect.map((fiber) => void (outageFiber = fiber))
          )
          : Effect.void)
      yield* Fiber.join(outageFiber!)
      const wanted = new Set(stored.map((e) => e.id))
      const deadline = Date.now() + 30_000
      let seen = new Set<string>()
      let received: Array<string> = []
      while (Date.now() < deadline) {
        received = rsyslog.lines().slice(before)
        seen = new Set(received.map((line) => idsOf("syslog", line).sdId))
        if ([...wanted].every((id) => seen.has(id))) break
        yield* Effect.sleep(Duration.millis(100))
      }
      assert.deepStrictEqual([...wanted].filter((id) => !seen.has(id)), [], "every event arrived")
      // Every line is a whole record as sent; a record seen twice is the same record.
      const sent = new Set(records)
      for (const line of received) assert.isTrue(sent.has(line), `a line that is not a record: ${line.slice(0, 120)}`)
      // The sink sent again what it had not confirmed. Whether rsyslog then wrote some records twice depends on what it
      // had written to its file before the kill: nothing, once (CI at 05:17: "resending 300 unconfirmed records", 300
      // lines), so only "at least once" is asserted; the ids above show a repeat is the same record.
      assert.isAtLeast(received.length, COUNT)
    }), 120_000)
})
