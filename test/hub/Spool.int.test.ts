import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { EventLog } from "../../core/EventLog.ts"
import { EventMeta, TunnelClosed, TunnelOpened } from "../../core/Events.ts"
import { AgentId, ServiceId, Streams, TunnelId, uuidv7 } from "../../core/Ids.ts"
import * as Spool from "../../hub/Spool.ts"
import * as HubLog from "../support/HubLog.ts"

const meta = new EventMeta({ actor: { kind: "system" } })

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
})
