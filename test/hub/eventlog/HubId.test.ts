import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { EventLog } from "../../../core/EventLog.ts"
import { EventMeta, WorkspaceCreated } from "../../../core/Events.ts"
import { uuidv7 } from "../../../core/Ids.ts"
import * as MemoryEventLog from "../../../core/MemoryEventLog.ts"
import * as HubId from "../../../hub/eventlog/HubId.ts"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-hubid-"))),
  (d) => Effect.sync(() => Fs.rmSync(d, { recursive: true, force: true }))
)

describe("HubId", () => {
  it.scoped("is drawn once per data directory, kept 0600, and the same at every start", () =>
    Effect.gen(function*() {
      const dir = Path.join(yield* tempDir, "hub")
      const first = yield* HubId.load(dir)
      expect(first).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/)
      expect(Fs.statSync(Path.join(dir, HubId.FILE)).mode & 0o777).toBe(0o600)
      expect(yield* HubId.load(dir)).toBe(first)
      expect(Fs.readdirSync(dir)).toEqual([HubId.FILE])
      expect(yield* HubId.load(yield* tempDir)).not.toBe(first)
    }))

  it.scoped("a file that holds no id is an error, never replaced", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      Fs.writeFileSync(Path.join(dir, HubId.FILE), "garbage\n")
      expect(yield* Effect.flip(HubId.load(dir))).toMatchObject({ _tag: "HubIdError" })
      expect(Fs.readFileSync(Path.join(dir, HubId.FILE), "utf8")).toBe("garbage\n")
    }))

  it("stamps meta that names no hub, and keeps one that does", () => {
    const bare = new EventMeta({ actor: { kind: "system" } })
    expect(HubId.stampMeta(bare, "h1")).toMatchObject({ actor: { kind: "system" }, hubId: "h1" })
    expect(HubId.stampMeta(new EventMeta({ actor: { kind: "system" }, hubId: "h0" }), "h1").hubId).toBe("h0")
  })

  it.effect("a stamping log hands the log one stamped meta per meta given, so its encoded text is kept", () =>
    Effect.gen(function*() {
      const memory = yield* MemoryEventLog.make
      const seen: Array<EventMeta> = []
      const spy: EventLog["Type"] = {
        ...memory.log,
        append: (stream, events, options) => {
          seen.push(options.meta)
          return memory.log.append(stream, events, options)
        }
      }
      const log = HubId.stamp(spy, "h1")
      const session = new EventMeta({ actor: { kind: "system" } })
      const other = new EventMeta({ actor: { kind: "system" } })
      const created = () => [new WorkspaceCreated({ workspaceId: uuidv7() as never, name: "w" })]
      const options = (meta: EventMeta) => ({ expectedVersion: "any" as const, workspaceId: null, meta })
      yield* log.append("s", created(), options(session))
      yield* log.append("s", created(), options(session))
      yield* log.append("s", created(), options(other))
      expect(seen.map((m) => m.hubId)).toEqual(["h1", "h1", "h1"])
      expect(seen[1]).toBe(seen[0])
      expect(seen[2]).not.toBe(seen[0])
    }))
})
