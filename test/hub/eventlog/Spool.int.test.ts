import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect, FiberRef, HashSet, Logger, TestClock } from "effect"
import { EventLog } from "../../../core/EventLog.ts"
import { EventMeta, TunnelClosed, TunnelOpened } from "../../../core/Events.ts"
import { AgentId, ServiceId, Streams, TunnelId, uuidv7 } from "../../../core/Ids.ts"
import * as Spool from "../../../hub/eventlog/Spool.ts"
import * as HubLog from "../../support/HubLog.ts"

const meta = new EventMeta({ actor: { kind: "system" } })
const serviceId = ServiceId.make(uuidv7())

const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-spool-"))),
  (d) => Effect.sync(() => Fs.rmSync(d, { recursive: true, force: true }))
)

const closed = (tunnelId: TunnelId, bytes: number) =>
  new TunnelClosed({ tunnelId, serviceId, bytesUp: bytes, bytesDown: bytes, durationMs: 1, reason: "end" })

/** Opens `n` tunnels in the log (version 1 of each stream), so their closes are expected at version 1. */
const openTunnels = (n: number) =>
  Effect.gen(function*() {
    const log = yield* EventLog
    const tunnels = Array.from({ length: n }, () => TunnelId.make(uuidv7()))
    for (const tunnelId of tunnels) {
      yield* log.append(Streams.tunnel(tunnelId), [
        new TunnelOpened({ tunnelId, serviceId, serviceName: "db", toAgentId: AgentId.make(uuidv7()) })
      ], { expectedVersion: "no_stream", workspaceId: null, meta })
    }
    return tunnels
  })

describe("Spool", () => {
  it.layer(HubLog.layer, { timeout: 60_000 })((it) => {
    it.scoped("survives a restart, ignores a torn last line, and replays each entry exactly once in order", () =>
      Effect.gen(function*() {
        const log = yield* EventLog
        const dir = yield* Effect.acquireRelease(
          Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-spool-"))),
          (d) => Effect.sync(() => Fs.rmSync(d, { recursive: true, force: true }))
        )
        const tunnels = [0, 1, 2].map(() => TunnelId.make(uuidv7()))
        const serviceId = ServiceId.make(uuidv7())
        for (const tunnelId of tunnels) {
          yield* log.append(Streams.tunnel(tunnelId), [
            new TunnelOpened({ tunnelId, serviceId, serviceName: "db", toAgentId: AgentId.make(uuidv7()) })
          ], { expectedVersion: "no_stream", workspaceId: null, meta })
        }
        const closed = (tunnelId: TunnelId, bytes: number) =>
          new TunnelClosed({ tunnelId, serviceId, bytesUp: bytes, bytesDown: bytes, durationMs: 1, reason: "end" })
        // The first one reached the log already (its ack was lost), then was spooled anyway.
        yield* log.append(Streams.tunnel(tunnels[0]!), [closed(tunnels[0]!, 10)], { expectedVersion: 1, workspaceId: null, meta })

        const first = yield* Spool.make(dir)
        for (const [i, tunnelId] of tunnels.entries()) {
          yield* first.write(Streams.tunnel(tunnelId), closed(tunnelId, 10 + i), { expectedVersion: 1, workspaceId: null, meta })
        }
        Fs.appendFileSync(Path.join(dir, "spool.jsonl"), `{"stream":"torn`)
        expect(first.pending()).toBe(3)

        // A new hub process finds the spool and replays it.
        const second = yield* Spool.make(dir)
        expect(second.pending()).toBe(3)
        expect(yield* second.replay).toBe(3)
        expect(second.pending()).toBe(0)
        expect(Fs.existsSync(Path.join(dir, "spool.jsonl"))).toBe(false)
        expect(yield* second.replay).toBe(0)

        const all = yield* log.readAll(0, 100)
        const closes = all.filter((e) => e.event._tag === "TunnelClosed").map((e) => [e.stream, (e.event as TunnelClosed).bytesUp])
        expect(closes).toEqual([
          [Streams.tunnel(tunnels[0]!), 10],
          [Streams.tunnel(tunnels[1]!), 11],
          [Streams.tunnel(tunnels[2]!), 12]
        ])
      }))
  })
  it.layer(HubLog.layer, { timeout: 60_000 })((it) => {
    it.scoped("a torn line in the middle (crash mid-write, then more entries) loses nothing: the fragment is cut on open", () =>
      Effect.gen(function*() {
        const log = yield* EventLog
        const dir = yield* tempDir
        const tunnels = yield* openTunnels(3)
        const first = yield* Spool.make(dir)
        yield* first.write(Streams.tunnel(tunnels[0]!), closed(tunnels[0]!, 20), { expectedVersion: 1, workspaceId: null, meta })
        // The hub dies mid-write: half a line, no newline.
        Fs.appendFileSync(Path.join(dir, "spool.jsonl"), `{"stream":"tunnel-torn","expectedVer`)

        // The next process opens the spool, keeps spooling (the log is still down), and only then replays.
        const second = yield* Spool.make(dir)
        expect(second.pending()).toBe(1)
        yield* second.write(Streams.tunnel(tunnels[1]!), closed(tunnels[1]!, 21), { expectedVersion: 1, workspaceId: null, meta })
        yield* second.write(Streams.tunnel(tunnels[2]!), closed(tunnels[2]!, 22), { expectedVersion: 1, workspaceId: null, meta })
        expect(second.pending()).toBe(3)
        expect(yield* second.replay).toBe(3)

        const closes = (yield* log.readAll(0, 1000)).filter((e) => e.event._tag === "TunnelClosed" && tunnels.includes(e.event.tunnelId as TunnelId))
        expect(closes.map((e) => (e.event as TunnelClosed).bytesUp)).toEqual([20, 21, 22])
      }))

    it.scoped("an unparseable complete line stops replay loudly, at that line, every time; nothing after it is skipped", () =>
      Effect.gen(function*() {
        const log = yield* EventLog
        const dir = yield* tempDir
        const tunnels = yield* openTunnels(2)
        const spool = yield* Spool.make(dir)
        yield* spool.write(Streams.tunnel(tunnels[0]!), closed(tunnels[0]!, 30), { expectedVersion: 1, workspaceId: null, meta })
        Fs.appendFileSync(Path.join(dir, "spool.jsonl"), `{"stream":"garbage\n`)
        yield* spool.write(Streams.tunnel(tunnels[1]!), closed(tunnels[1]!, 31), { expectedVersion: 1, workspaceId: null, meta })

        const reopened = yield* Spool.make(dir)
        for (let i = 0; i < 2; i++) {
          const failed = yield* Effect.flip(reopened.replay)
          expect(failed).toMatchObject({ _tag: "SpoolError", reason: "Corrupt", line: 2 })
        }
        expect(reopened.pending()).toBe(2)
        const closes = (yield* log.readAll(0, 1000)).filter((e) => e.event._tag === "TunnelClosed" && tunnels.includes(e.event.tunnelId as TunnelId))
        expect(closes.map((e) => (e.event as TunnelClosed).bytesUp)).toEqual([30])
        expect(Fs.existsSync(Path.join(dir, "spool.jsonl"))).toBe(true)
      }))

    it.scoped("an entry the log refuses stops replay at its line (never skipped); each entry carries its own UUIDv7 id", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const tunnels = yield* openTunnels(1)
        const spool = yield* Spool.make(dir)
        // A stream name the events table refuses (NUL is not storable in text): Postgres rejects it for good.
        yield* spool.write("tunnel-\u0000bad", closed(tunnels[0]!, 40), { expectedVersion: "any", workspaceId: null, meta })
        yield* spool.write(Streams.tunnel(tunnels[0]!), closed(tunnels[0]!, 41), { expectedVersion: 1, workspaceId: null, meta })
        const lines = Fs.readFileSync(Path.join(dir, "spool.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l))
        expect(lines.map((l) => l.id)).toEqual([expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-7/), expect.stringMatching(/^[0-9a-f-]{36}$/)])
        expect(lines[0].id).not.toBe(lines[1].id)
        const failed = yield* Effect.flip(spool.replay)
        expect(failed).toMatchObject({ _tag: "SpoolError", reason: "Refused", line: 1 })
        expect(spool.pending()).toBe(2)
      }))
    it.scoped("the replayer logs a stopped replay as an error naming the line, and retries with growing delays", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        Fs.writeFileSync(Path.join(dir, "spool.jsonl"), "not json\n")
        const spool = yield* Spool.make(dir)
        const logged: Array<string> = []
        const logger = Logger.make(({ logLevel, message }) => {
          logged.push(`${logLevel.label} ${Array.isArray(message) ? message[0] : message}`)
        })
        yield* Effect.locallyScopedWith(FiberRef.currentLoggers, (ls) => HashSet.add(ls, logger))
        yield* Spool.runReplayer(spool, { interval: "10 millis", maxBackoff: "80 millis" })
        for (let i = 0; i < 40; i++) yield* TestClock.adjust("10 millis")
        const stops = logged.filter((l) => l.startsWith("ERROR spool: REPLAY STOPPED at") && l.includes("line 1 (Corrupt)"))
        expect(stops.length).toBeGreaterThanOrEqual(3)
        expect(stops.slice(0, 4).map((l) => Number(l.match(/retrying in (\d+) ms/)![1]))).toEqual([20, 40, 80, 80].slice(0, Math.min(4, stops.length)))
        expect(spool.pending()).toBe(1)
      }))
    it.scoped("an entry whose append committed but whose reply was lost is recognised by its id at replay (no version to check)", () =>
      Effect.gen(function*() {
        const log = yield* EventLog
        const dir = yield* tempDir
        const tunnels = yield* openTunnels(1)
        const stream = `test-${uuidv7()}`
        const spool = yield* Spool.make(dir)
        yield* spool.write(stream, closed(tunnels[0]!, 50), { expectedVersion: "any", workspaceId: null, meta })
        const entry = JSON.parse(Fs.readFileSync(Path.join(dir, "spool.jsonl"), "utf8")) as { id: string }
        // The original append reached the log with that id; only its reply was lost, so the entry stayed spooled.
        yield* log.append(stream, [closed(tunnels[0]!, 50)], { expectedVersion: "any", workspaceId: null, meta, ids: [entry.id] })
        expect(yield* spool.replay).toBe(1)
        expect((yield* log.readStream(stream)).map((e) => e.id)).toEqual([entry.id])
      }))
  })
})
