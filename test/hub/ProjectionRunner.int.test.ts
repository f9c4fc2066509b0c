/**
 * Projections run safely beside a live hub: two followers of one async projection apply each event once (the
 * checkpoint moves by compare-and-set).
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Layer } from "effect"
import { type AppendOptions, EventLog } from "../../core/EventLog.ts"
import * as E from "../../core/Events.ts"
import { uuidv7, WorkspaceId } from "../../core/Ids.ts"
import type { Projection } from "../../core/Projection.ts"
import * as Database from "../../hub/Database.ts"
import * as Main from "../../hub/Main.ts"
import * as Migrations from "../../hub/Migrations.ts"
import * as PgEventLog from "../../hub/PgEventLog.ts"
import * as ProjectionRunner from "../../hub/ProjectionRunner.ts"
import { ProjectionSql } from "../../hub/ProjectionSql.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

const meta = new E.EventMeta({ actor: { kind: "system" } })
const opts = (workspaceId: string | null = null): AppendOptions => ({ expectedVersion: "any", workspaceId, meta })
const created = (name: string) => new E.WorkspaceCreated({ workspaceId: WorkspaceId.make(uuidv7()), name })

/** The hub's event log (inline read models) on `url`, migrated by whoever `url` connects as. */
const hubOn = (url: string, migrate = true) =>
  PgEventLog.layer({ inline: Main.InlineProjections }).pipe(
    Layer.provideMerge(migrate ? Layer.effectDiscard(Migrations.run) : Layer.empty),
    Layer.provideMerge(PgClient.layer(Database.pgClientConfig(url, { maxConnections: 6 })))
  )

/** Counts events per type (`type_counts`), with an optional pause before each batch to widen races. */
const typeCounts = (pause?: Effect.Effect<void>): Projection<ProjectionSql> => ({
  name: "type_counts",
  mode: "async",
  apply: (events) =>
    Effect.flatMap(ProjectionSql, (q) =>
      Effect.zipRight(
        pause ?? Effect.void,
        q.execute(
          `insert into type_counts select t, count(*) from unnest($1::text[]) t group by t
           on conflict (type) do update set n = type_counts.n + excluded.n`,
          [events.map((e) => e.type)]
        )
      )
    ),
  reset: Effect.flatMap(ProjectionSql, (q) => q.execute(`delete from type_counts`))
})

describe("ProjectionRunner", () => {
  it.scopedLive("two followers of one projection apply every event exactly once, and the checkpoint never goes back", () =>
    Effect.gen(function*() {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      const ctx = yield* Layer.build(hubOn(url))
      yield* Effect.gen(function*() {
        const log = yield* EventLog
        const sql = yield* SqlClient.SqlClient
        yield* sql.unsafe(`create table type_counts (type text primary key, n int not null)`)
        yield* Effect.forEach(Array.from({ length: 300 }, (_, i) => i), (i) => log.append(`f-${i % 7}`, [created(`w${i}`)], opts()), {
          concurrency: 16,
          discard: true
        })
        const counts = typeCounts(Effect.sleep("5 millis"))
        const followers = yield* Effect.forEach([1, 2, 3], () => Effect.fork(ProjectionRunner.follow(counts, 40)))
        const seen: Array<number> = []
        const deadline = Date.now() + 15_000
        while (Date.now() < deadline) {
          seen.push(yield* ProjectionRunner.checkpoint("type_counts"))
          if (seen[seen.length - 1] === 300) break
          yield* Effect.sleep("5 millis")
        }
        yield* log.append("f-late", [created("late")], opts())
        while ((yield* ProjectionRunner.checkpoint("type_counts")) < 301 && Date.now() < deadline) yield* Effect.sleep("10 millis")
        yield* Effect.sleep("200 millis")
        yield* Fiber.interruptAll(followers)
        expect(yield* sql.unsafe(`select type, n from type_counts`)).toEqual([{ type: "WorkspaceCreated", n: 301 }])
        expect(seen.every((p, i) => i === 0 || p >= seen[i - 1]!)).toBe(true)
        expect(yield* ProjectionRunner.checkpoint("type_counts")).toBe(301)
        // A runner whose checkpoint is stale moves nothing.
        expect(yield* ProjectionRunner.storeCheckpoint("type_counts", 200, 250)).toBe(false)
        expect(yield* ProjectionRunner.checkpoint("type_counts")).toBe(301)
      }).pipe(Effect.provide(ctx))
    }), { timeout: 60_000 })
})
