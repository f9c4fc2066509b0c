/**
 * Command's retries: after an append whose outcome is unknown (Unavailable) it appends the same events with the same
 * ids, so the log can answer with what committed; after a version conflict it decides again, with new ids.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Layer, Stream } from "effect"
import type { Decider } from "../../core/Decider.ts"
import { DomainError } from "../../core/DomainError.ts"
import { type AppendOptions, type AppendResult, EventLog, EventLogError, VersionConflict } from "../../core/EventLog.ts"
import { type Event, EventMeta, WorkspaceCreated } from "../../core/Events.ts"
import { uuidv7 } from "../../core/Ids.ts"
import * as Command from "../../hub/Command.ts"

const decider: Decider<string, number, DomainError> = {
  initialState: 0,
  evolve: (n) => n + 1,
  decide: (name) => Either.right([new WorkspaceCreated({ workspaceId: uuidv7() as never, name })])
}

/** An event log whose appends answer from `script` in turn, recording what each was asked. */
const scripted = (script: ReadonlyArray<"unavailable" | "conflict" | "ok">) => {
  const calls: Array<{ events: ReadonlyArray<Event>; options: AppendOptions }> = []
  const layer = Layer.succeed(
    EventLog,
    EventLog.of({
      append: (_stream, events, options) =>
        Effect.suspend((): Effect.Effect<AppendResult, VersionConflict | EventLogError> => {
          const step = script[calls.length]
          calls.push({ events, options })
          if (step === "unavailable") {
            return Effect.fail(new EventLogError({ reason: "Unavailable", message: "event log unavailable: lost" }))
          }
          if (step === "conflict") return Effect.fail(new VersionConflict({ stream: "s", expected: "no_stream", actual: 1 }))
          return Effect.succeed({ firstPosition: 1, lastPosition: 1, version: 1 })
        }),
      readStream: () => Effect.succeed([]),
      readAll: () => Effect.succeed([]),
      readLinks: () => Effect.succeed([]),
      checkChain: () => Effect.succeed(undefined),
      subscribe: () => Stream.empty,
      head: Effect.die("unused")
    })
  )
  return { calls, layer }
}

const run = (layer: Layer.Layer<EventLog>) =>
  Command.handle(decider, "s", "w", { workspaceId: null, meta: new EventMeta({ actor: { kind: "system" } }) }).pipe(
    Effect.provide(layer)
  )

describe("Command.handle", () => {
  it.live("after an unknown outcome it appends the same events with the same ids", () =>
    Effect.gen(function* () {
      const { calls, layer } = scripted(["unavailable", "ok"])
      yield* run(layer)
      expect(calls).toHaveLength(2)
      expect(calls[0]!.options.ids).toHaveLength(1)
      expect(calls[1]!.options.ids).toEqual(calls[0]!.options.ids)
      expect(calls[1]!.events).toBe(calls[0]!.events)
    })
  )

  it.live("after a version conflict it decides again, with new ids", () =>
    Effect.gen(function* () {
      const { calls, layer } = scripted(["conflict", "ok"])
      yield* run(layer)
      expect(calls).toHaveLength(2)
      expect(calls[1]!.options.ids).toHaveLength(1)
      expect(calls[1]!.options.ids).not.toEqual(calls[0]!.options.ids)
    })
  )

  it.live("an outage that lasts fails the command as Unavailable", () =>
    Effect.gen(function* () {
      const { layer } = scripted(["unavailable", "unavailable", "unavailable", "unavailable", "unavailable"])
      const error = yield* Effect.flip(run(layer))
      expect(error).toMatchObject({ _tag: "EventLogError", reason: "Unavailable" })
    })
  )
})
