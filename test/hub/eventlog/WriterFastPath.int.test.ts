/**
 * The writer's fast path (PgWriterFast) is taken: once the writer knows the head, an append from one caller is one
 * transaction that commits, not a failed attempt and the slow path after it. A fast path that always failed would still
 * append everything correctly (its failures go the slow way), so only the database's own count of rolled-back
 * transactions tells.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { EventLog } from "../../../core/EventLog.ts"
import { EventMeta, WorkspaceCreated } from "../../../core/Events.ts"
import { uuidv7 } from "../../../core/Ids.ts"
import * as Migrations from "../../../hub/db/Migrations.ts"
import * as PgEventLog from "../../../hub/eventlog/PgEventLog.ts"
import * as Main from "../../../hub/Main.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"

const layer = PgEventLog.layer({ inline: Main.INLINE_PROJECTIONS }).pipe(
  Layer.provideMerge(Migrations.layer),
  Layer.provideMerge(TestDatabase.layer),
  Layer.orDie
)

const meta = new EventMeta({ actor: { kind: "system" } })

describe("PgWriter fast path", () => {
  it.layer(layer, { timeout: 60_000 })((it) => {
    it.effect("an append from a writer that knows the head commits in one transaction, with no attempt rolled back", () =>
      Effect.gen(function*() {
        const log = yield* EventLog
        const sql = yield* SqlClient.SqlClient
        const stream = `workspace-${uuidv7()}`
        const append = (i: number) =>
          log.append(stream, [new WorkspaceCreated({ workspaceId: uuidv7() as never, name: `w${i}` })], {
            expectedVersion: i,
            workspaceId: null,
            meta
          })
        // A backend sends its counts at the end of a transaction at most once a second: each pause and append after
        // it makes the writer's backend send what came before.
        // (A timer, not Effect.sleep: the test clock does not move by itself.)
        const pause = Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 1100)))
        const flushed = Effect.zipRight(pause, append(0).pipe(Effect.ignore))
        const rollbacks = Effect.gen(function*() {
          yield* sql`select pg_stat_clear_snapshot()`
          const rows = yield* sql<{ n: string }>`
            select xact_rollback::text as n from pg_stat_database where datname = current_database()`
          return Number(rows[0]!.n)
        })
        // The first append reads the head under the lock; the writer knows it from then on.
        yield* append(0)
        yield* flushed
        const before = yield* rollbacks
        for (let i = 1; i <= 30; i++) {
          const result = yield* append(i)
          expect(result.version).toBe(i + 1)
        }
        yield* flushed
        yield* flushed
        expect((yield* rollbacks) - before).toBe(0)
      }))
  })
})
