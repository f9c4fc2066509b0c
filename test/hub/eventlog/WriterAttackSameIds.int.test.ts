/**
 * Two appends with the same caller ids that meet in one batch: as the memory log (and the EventLog contract: "an
 * append whose ids are stored stores nothing again and answers what it stored"), the Postgres writer answers the
 * second with what the first stores. Failed when ids were checked only against the log: the second caller was told
 * Rejected ("duplicate key") for an event that was stored, or VersionConflict instead of success.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Either, Layer } from "effect"
import { EventLog } from "../../../core/EventLog.ts"
import { uuidv7 } from "../../../core/Ids.ts"
import * as MemoryEventLog from "../../../core/MemoryEventLog.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"
import { append, created, logOn, opts, rows, session } from "../../support/WriterAttack.ts"

const twice = (log: EventLog["Type"]) =>
  Effect.gen(function* () {
    const ids = [uuidv7()]
    // Both are queued before the writer runs: one batch.
    return yield* Effect.all(
      [0, 1].map(() => Effect.either(log.append("twice", [created("once")], opts("any", ids)))),
      { concurrency: "unbounded" }
    )
  })

const describeOutcome = (o: Either.Either<unknown, { _tag: string; message: string }>) =>
  Either.isRight(o) ? o.right : `${o.left._tag}: ${o.left.message.slice(0, 80)}`

describe("the same caller ids twice in one batch", () => {
  it.scopedLive("the second is answered with what the first stored, as the memory log answers", () =>
    Effect.gen(function* () {
      const memory = (yield* MemoryEventLog.make).log
      const expected = (yield* twice(memory)).map(describeOutcome)
      expect(expected[0]).toEqual(expected[1])

      const url = yield* TestDatabase.makeTestDatabaseUrl
      const ctx = yield* Layer.build(logOn(url))
      yield* append(ctx, "warm", "warm", opts("any"))
      const outcomes = (yield* twice(Context.get(ctx, EventLog))).map(describeOutcome)
      const stored = (yield* rows(yield* session(url))).map((r) => r.name)
      expect({ outcomes, stored }).toEqual({ outcomes: [outcomes[0], outcomes[0]], stored: ["warm", "once"] })
    }))
})
