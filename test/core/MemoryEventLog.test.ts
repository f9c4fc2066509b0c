/**
 * The memory log: the EventLog contract, and its test hook failing appends the two ways the Postgres log can.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { type AppendOptions } from "../../core/EventLog.ts"
import { EventMeta, WorkspaceCreated } from "../../core/Events.ts"
import { uuidv7, WorkspaceId } from "../../core/Ids.ts"
import * as MemoryEventLog from "../../core/MemoryEventLog.ts"
import { eventLogContract } from "../support/EventLogContract.ts"

eventLogContract("MemoryEventLog", MemoryEventLog.layer)

const options = (more: Partial<AppendOptions> = {}): AppendOptions => ({
  expectedVersion: "no_stream",
  workspaceId: null,
  meta: new EventMeta({ actor: { kind: "system" } }),
  ...more
})
const created = new WorkspaceCreated({ workspaceId: WorkspaceId.make(uuidv7()), name: "w" })

describe("MemoryEventLog.failNextAppend", () => {
  it.effect("unreachable: the append fails as Unavailable and stores nothing; the next one goes through", () =>
    Effect.gen(function* () {
      const { failNextAppend, log } = yield* MemoryEventLog.make
      failNextAppend("unreachable")
      expect(yield* Effect.flip(log.append("s", [created], options()))).toMatchObject({ reason: "Unavailable" })
      expect((yield* log.head).position).toBe(0)
      expect(yield* log.append("s", [created], options())).toEqual({ firstPosition: 1, lastPosition: 1, version: 1 })
    }))

  it.effect("replyLost: the append is stored but answered Unavailable; its retry with the same ids stores nothing", () =>
    Effect.gen(function* () {
      const { failNextAppend, log } = yield* MemoryEventLog.make
      failNextAppend("replyLost")
      const ids = [uuidv7()]
      const lost = yield* Effect.flip(log.append("s", [created], options({ ids })))
      expect(lost).toMatchObject({ reason: "Unavailable" })
      expect(lost.message).toContain("same ids is safe")
      expect((yield* log.head).position).toBe(1)
      expect(yield* log.append("s", [created], options({ ids }))).toEqual({ firstPosition: 1, lastPosition: 1, version: 1 })
      expect((yield* log.head).position).toBe(1)
    }))

  it.effect("faults queue up, one append each, and a refused request does not use one", () =>
    Effect.gen(function* () {
      const { failNextAppend, log } = yield* MemoryEventLog.make
      failNextAppend("unreachable")
      failNextAppend("unreachable")
      expect(yield* Effect.flip(log.append("s", [], options()))).toMatchObject({ reason: "Rejected" })
      expect(yield* Effect.flip(log.append("s", [created], options()))).toMatchObject({ reason: "Unavailable" })
      expect(yield* Effect.flip(log.append("s", [created], options()))).toMatchObject({ reason: "Unavailable" })
      expect(yield* log.append("s", [created], options())).toMatchObject({ version: 1 })
    }))
})
