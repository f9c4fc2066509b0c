/**
 * A note is evidence: once the hub has signed position P, the note it wrote there must survive. A hub whose log no
 * longer holds what it signed at P — its database restored from an older backup, its tail cut and grown again, or a
 * second hub started on another database with the same data directory — would sign another head at the same position
 * with the same key and origin (a fork), and replace the note that proves the earlier history. It must refuse, keep
 * the earlier note and say why.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Console, Effect, Exit, Layer, Option, TestClock } from "effect"
import { EventLog } from "../../../core/EventLog.ts"
import { EventMeta, WorkspaceCreated } from "../../../core/Events.ts"
import { uuidv7, WorkspaceId } from "../../../core/Ids.ts"
import * as MemoryEventLog from "../../../core/MemoryEventLog.ts"
import * as Checkpointer from "../../../hub/checkpoints/Checkpointer.ts"
import * as KeyFile from "../../../hub/checkpoints/KeyFile.ts"

const append = (n: number, name: string) =>
  Effect.flatMap(EventLog, (log) =>
    Effect.forEach(Array.from({ length: n }), () =>
      log.append("w", [new WorkspaceCreated({ workspaceId: WorkspaceId.make(uuidv7()), name })], {
        expectedVersion: "any",
        workspaceId: null,
        meta: new EventMeta({ actor: { kind: "admin" } })
      })))

const settings = { every: 3, intervalMs: 60_000, origin: "test.example/connect" }

/** A console that keeps what is printed (log and error) in `lines`. */
const capturing = (lines: Array<string>) =>
  Effect.map(Effect.console, (console): Console.Console => ({
    ...console,
    error: (...args: ReadonlyArray<unknown>) => Effect.sync(() => void lines.push(args.join(" "))),
    log: (...args: ReadonlyArray<unknown>) => Effect.sync(() => void lines.push(args.join(" ")))
  }))

describe("checkpoint notes are never replaced by another history", () => {
  it.scoped("a second log reaching a signed position with another head is refused, the first note kept", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-checkpoint-fork-"))),
        (d) => Effect.sync(() => Fs.rmSync(d, { recursive: true, force: true }))
      )
      const keys = KeyFile.layer(dir)
      // The first history: 3 events, signed at 3.
      const first = yield* Effect.gen(function*() {
        yield* append(3, "first")
        return yield* Checkpointer.signHead(settings, dir)
      }).pipe(Effect.provide(Layer.merge(MemoryEventLog.layer, keys)))
      const path = Option.getOrThrow(first).path
      expect(Path.basename(path)).toBe("3.note")
      const original = Fs.readFileSync(path, "utf8")

      // Another history (a restored or other database) with the same data directory reaches position 3 again.
      const second = yield* Effect.exit(
        Effect.gen(function*() {
          yield* append(3, "second")
          return yield* Checkpointer.signHead(settings, dir)
        }).pipe(Effect.provide(Layer.merge(MemoryEventLog.layer, keys)))
      )
      expect(Fs.readFileSync(path, "utf8")).toBe(original)
      expect(Exit.isFailure(second)).toBe(true)
      expect(JSON.stringify(second)).toMatch(/position 3/)
    }))

  it.scoped("a hub whose log no longer holds its last note says so at start and signs nothing over that history", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-checkpoint-start-"))),
        (d) => Effect.sync(() => Fs.rmSync(d, { recursive: true, force: true }))
      )
      const keys = KeyFile.layer(dir)
      // The first history, signed at 3, then a log that holds another history (rewritten), or less of it (cut).
      yield* Effect.gen(function*() {
        yield* append(3, "first")
        yield* Checkpointer.signHead(settings, dir)
      }).pipe(Effect.provide(Layer.merge(MemoryEventLog.layer, keys)))
      const notes = () => Fs.readdirSync(Path.join(dir, "checkpoints")).sort()
      for (const [history, events] of [["rewritten", 7], ["cut", 2]] as const) {
        const lines: Array<string> = []
        const console = yield* capturing(lines)
        yield* Effect.scoped(Effect.gen(function*() {
          yield* append(events, history)
          yield* Layer.build(Checkpointer.layer(settings, dir))
          yield* append(6, history)
          yield* TestClock.adjust("2 seconds")
        })).pipe(
          Effect.provide(Layer.merge(MemoryEventLog.layer, keys)),
          Effect.withConsole(console)
        )
        expect(notes()).toEqual(["3.note"])
        expect(lines.join("\n")).toMatch(history === "cut" ? /ends at position 2/ : /holds another event at position 3/)
      }
    }))
})
