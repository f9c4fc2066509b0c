/**
 * LinkRecorder's metadata cache against a stranger (found in review). It keyed its EventMeta by the raw address and user
 * agent, before sanitize/cap: a stranger with one link URL
 * cycling 16 KB user agents (Node's header limit) makes the hub keep up to 4096 such keys, ~64 MiB, for as long as it
 * runs. The metadata it caches holds the user agent capped at CAPS.label (128), so keying by the capped value bounds it
 * at ~0.5 MiB. Before 7adda41 nothing was kept.
 *
 * And its groups while the log is slow (attacker review): records of requests that end while an append is on its way
 * gather by link, address and user agent. The key held the raw user agent, so 2,000 strangers' requests during one
 * slow append kept ~35 MB of keys; it holds the recorded (sanitised, capped) values now.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as V8 from "node:v8"
import * as Vm from "node:vm"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect } from "effect"
import { EventLog } from "../../../core/EventLog.ts"
import * as MemoryEventLog from "../../../core/MemoryEventLog.ts"
import * as Spool from "../../../hub/eventlog/Spool.ts"
import * as LinkRecorder from "../../../hub/http/LinkRecorder.ts"

V8.setFlagsFromString("--expose-gc")
const gc = Vm.runInNewContext("gc") as () => void

const retained = () => {
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

describe("LinkRecorder metadata cache against a stranger", () => {
  it.scopedLive("records of 4096 requests with distinct 16 KB user agents leave under 32 MiB behind (the memory log itself keeps ~16 MiB of them)", () =>
    Effect.gen(function*() {
      const memory = yield* MemoryEventLog.make
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-metacache-"))),
        (d) => Effect.sync(() => Fs.rmSync(d, { recursive: true, force: true }))
      )
      const spool = yield* Spool.make(dir)
      const recorder = yield* LinkRecorder.make(spool, { window: "10 seconds" }).pipe(Effect.provideService(EventLog, memory.log))
      const link = { linkId: "0190f5c2-0000-7000-8000-000000000001", workspaceId: "0190f5c2-0000-7000-8000-000000000002", serviceId: "0190f5c2-0000-7000-8000-000000000003" }
      const before = retained()
      for (let i = 0; i < 4095; i++) {
        const access: LinkRecorder.Access = {
          link, ip: "203.0.113.9", userAgent: `${i}-${"x".repeat(16_000)}`, method: "GET", path: "/", status: 200,
          bytesUp: 0, bytesDown: 1, durationMs: 1
        }
        recorder.allowed(access)
        if (i % 64 === 0) yield* Effect.sleep("1 millis")
      }
      // Every record appended, then what is left is what the recorder keeps.
      for (let i = 0; i < 200 && (yield* memory.log.readAll(0, 100_000)).length < 4095; i++) yield* Effect.sleep("20 millis")
      expect((yield* memory.log.readAll(0, 100_000)).length).toBe(4095)
      const kept = retained() - before
      // Kept alive until here: the recorder is in scope.
      expect(recorder).toBeDefined()
      expect(kept).toBeLessThan(32 * 1024 * 1024)
    }), { timeout: 60_000 })
})

const REQUESTS = 2_000

describe("LinkRecorder groups against a stranger while the log is slow", () => {
  it.scopedLive(`${REQUESTS} requests with distinct 16 KB user agents during one stalled append keep under 12 MiB`, () =>
    Effect.gen(function*() {
      const memory = yield* MemoryEventLog.make
      const released = yield* Deferred.make<void>()
      // Every append waits until the test releases it: the first round stays on its way while the rest gather.
      const stalled = EventLog.of({
        ...memory.log,
        append: (stream, events, options) => Effect.zipRight(Deferred.await(released), memory.log.append(stream, events, options))
      })
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-groupsmem-"))),
        (d) => Effect.sync(() => Fs.rmSync(d, { recursive: true, force: true }))
      )
      const spool = yield* Spool.make(dir)
      const recorder = yield* LinkRecorder.make(spool, { window: "10 seconds" }).pipe(Effect.provideService(EventLog, stalled))
      const link = { linkId: "0190f5c2-0000-7000-8000-000000000001", workspaceId: "0190f5c2-0000-7000-8000-000000000002", serviceId: "0190f5c2-0000-7000-8000-000000000003" }
      const access = (userAgent: string): LinkRecorder.Access => ({
        link, ip: "203.0.113.9", userAgent, method: "GET", path: "/", status: 200, bytesUp: 0, bytesDown: 1, durationMs: 1
      })
      recorder.allowed(access("first"))
      yield* Effect.sleep("20 millis")
      const before = retained()
      for (let i = 0; i < REQUESTS; i++) {
        // A fresh 16 KB string each time, as a parsed header is.
        recorder.allowed(access(`${i}-${"x".repeat(16_000)}`))
      }
      const kept = retained() - before
      yield* Deferred.succeed(released, undefined)
      for (let i = 0; i < 200 && (yield* memory.log.readAll(0, 100_000)).length < REQUESTS + 1; i++) {
        yield* Effect.sleep("20 millis")
      }
      expect((yield* memory.log.readAll(0, 100_000)).length).toBe(REQUESTS + 1)
      expect(kept).toBeLessThan(12 * 1024 * 1024)
    }), { timeout: 60_000 })
})
