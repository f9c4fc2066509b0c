/**
 * The writer's batch observer (PgWriter's `onBatch`, the hub's metrics) is best effort: one that throws neither loses
 * the batch it was told of nor stops the writer (it ran in the one writer fiber, a batch already off the queue).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { EventLog } from "../../../core/EventLog.ts"
import { EventMeta, WorkspaceCreated } from "../../../core/Events.ts"
import { uuidv7 } from "../../../core/Ids.ts"
import * as Migrations from "../../../hub/db/Migrations.ts"
import * as PgEventLog from "../../../hub/eventlog/PgEventLog.ts"
import * as Main from "../../../hub/Main.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"

let told = 0
const throwing = () => {
  told++
  throw new Error("observer failed")
}

const layer = PgEventLog.layer({ inline: Main.INLINE_PROJECTIONS, onBatch: throwing }).pipe(
  Layer.provideMerge(Migrations.layer),
  Layer.provideMerge(TestDatabase.layer),
  Layer.orDie
)

const options = { expectedVersion: "any" as const, workspaceId: null, meta: new EventMeta({ actor: { kind: "system" } }) }

describe("PgWriter onBatch", () => {
  it.layer(layer, { timeout: 60_000 })((it) => {
    it.effect("an observer that throws loses no append and stops nothing", () =>
      Effect.gen(function*() {
        const log = yield* EventLog
        for (let i = 0; i < 3; i++) {
          const result = yield* log.append(`workspace-${uuidv7()}`, [new WorkspaceCreated({ workspaceId: uuidv7() as never, name: `o${i}` })], options).pipe(
            Effect.timeout("20 seconds")
          )
          expect(result.lastPosition).toBeGreaterThan(0)
        }
        expect(told).toBeGreaterThanOrEqual(3)
      }))
  })
})
