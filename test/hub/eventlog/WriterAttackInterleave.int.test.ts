/**
 * Regression guards for the one-round-trip writer under interleaving: three hubs (writers) on one database appending
 * to shared streams with expected versions that are often stale (conflicts answered from each writer's belief, then
 * checked by `connect_append`), fresh streams (guessed versions), and retries with the same caller ids; and a COMMIT
 * whose reply is lost on the fast path for a batch that holds a stored request, a conflict and a caller-id request.
 * Every caller must be told what is stored, each event stored once, versions gap-free, the chain intact.
 */
import { describe, expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Context, Effect, Either, Layer } from "effect"
import { verify } from "../../../audit/Verify.ts"
import { type AppendResult, EventLog } from "../../../core/EventLog.ts"
import type { WorkspaceCreated } from "../../../core/Events.ts"
import { uuidv7 } from "../../../core/Ids.ts"
import type { Projection } from "../../../core/Projection.ts"
import { ProjectionSql } from "../../../core/ProjectionSql.ts"
import * as StreamHeads from "../../../hub/readmodels/StreamHeads.ts"
import * as TcpProxy from "../../support/TcpProxy.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"
import { append, created, logOn, opts, rows, session } from "../../support/WriterAttack.ts"

interface Told {
  readonly ids: ReadonlyArray<string>
  readonly stream: string
  readonly outcome: Either.Either<AppendResult, { readonly _tag: string }>
}

describe("writers interleaving on one database", () => {
  it.scopedLive("three writers, stale expectations, fresh streams and retried ids: every caller told what is stored", () =>
    Effect.gen(function* () {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      const contexts = [yield* Layer.build(logOn(url)), yield* Layer.build(logOn(url)), yield* Layer.build(logOn(url))]
      const logs = contexts.map((ctx) => Context.get(ctx, EventLog))
      const told: Array<Told> = []
      const worker = (log: EventLog["Type"], w: number) =>
        Effect.gen(function* () {
          const seen = new Map<string, number>()
          for (let i = 0; i < 8; i++) {
            const stream = i % 3 === 2 ? `fresh-${w}-${i}` : `shared-${i % 2}`
            const expected = i % 4 === 3 ? "any" : seen.get(stream) ?? "no_stream"
            const ids = i % 2 === 0 ? [uuidv7(), uuidv7()] : undefined
            const events = [created(`${w}-${i}-a`), created(`${w}-${i}-b`)]
            const outcome = yield* Effect.either(log.append(stream, events, opts(expected, ids)))
            const actual = ids ?? []
            told.push({ ids: actual, stream, outcome })
            if (Either.isRight(outcome)) seen.set(stream, outcome.right.version)
            // A caller's retry with the same ids (its first reply "lost"): told the same, stores nothing.
            if (ids && Either.isRight(outcome)) {
              const again = yield* Effect.either(log.append(stream, events, opts(expected, ids)))
              expect(again).toEqual(outcome)
            }
          }
        })
      yield* Effect.all(
        logs.flatMap((log, l) => [0, 1].map((k) => worker(log, l * 2 + k))),
        { concurrency: "unbounded" }
      )

      const stored = yield* rows(yield* session(url))
      const byId = new Map(stored.map((r) => [r.id, r]))
      // Positions 1..n, each stream's versions 1..k.
      expect(stored.map((r) => r.position)).toEqual(stored.map((_, i) => i + 1))
      const versions = new Map<string, Array<number>>()
      for (const r of stored) versions.set(r.stream, [...(versions.get(r.stream) ?? []), r.version])
      for (const [, vs] of versions) expect(vs).toEqual(vs.map((_, i) => i + 1))
      // What each caller was told is what is stored.
      let succeeded = 0
      for (const t of told) {
        if (Either.isRight(t.outcome)) {
          succeeded++
          if (t.ids.length > 0) {
            expect(t.ids.map((id) => byId.get(id)?.position)).toEqual([t.outcome.right.firstPosition, t.outcome.right.lastPosition])
          }
          const last = stored[t.outcome.right.lastPosition - 1]!
          expect({ stream: last.stream, version: last.version }).toEqual({ stream: t.stream, version: t.outcome.right.version })
        } else {
          expect(t.outcome.left._tag).toBe("VersionConflict")
          for (const id of t.ids) expect(byId.has(id)).toBe(false)
        }
      }
      expect(stored.length).toBe(succeeded * 2)
      expect(told.some((t) => Either.isLeft(t.outcome))).toBe(true)
      expect(yield* verify().pipe(Effect.provide(contexts[0]!))).toMatchObject({ ok: true, count: stored.length })
    }))

  it.scopedLive("a lost COMMIT reply on the fast path: conflicts, a guessed stream and a stored retry each told the truth", () =>
    Effect.gen(function* () {
      const direct = yield* TestDatabase.makeTestDatabaseUrl
      const u = new URL(direct)
      const proxy = yield* TcpProxy.start(u.hostname, Number(u.port || 5432))
      u.hostname = "127.0.0.1"
      u.port = String(proxy.port)
      const ctx = yield* Layer.build(logOn(u.toString()))
      const log = Context.get(ctx, EventLog)
      const retriedIds = [uuidv7()]
      const first = yield* log.append("retried", [created("retried")], opts("no_stream", retriedIds))
      yield* append(ctx, "taken", "taken", opts("any"))
      // One batch, sent from the writer's belief (head and versions known, "fresh" guessed) in one message that commits
      // and whose reply is lost.
      proxy.cutAfterCommit()
      const [conflict, fresh, second, other] = yield* Effect.all(
        [
          Effect.either(log.append("taken", [created("conflict")], opts("no_stream"))),
          Effect.either(log.append("fresh", [created("fresh")], opts("no_stream", [uuidv7()]))),
          Effect.either(log.append("fresh", [created("second")], opts("no_stream"))),
          Effect.either(log.append("taken", [created("other")], opts(1)))
        ],
        { concurrency: "unbounded" }
      )
      expect(Either.isLeft(conflict) && conflict.left._tag).toBe("VersionConflict")
      expect(fresh).toEqual(Either.right({ firstPosition: 3, lastPosition: 3, version: 1 }))
      expect(Either.isLeft(second) && second.left._tag).toBe("VersionConflict")
      expect(other).toEqual(Either.right({ firstPosition: 4, lastPosition: 4, version: 2 }))
      // And a batch whose message fails (CN003: a retried id is stored) with its reply lost: nothing committed, and the
      // retry under the lock answers the stored request from the log and stores the other.
      proxy.cutAfterCommit()
      const [retried, next] = yield* Effect.all(
        [
          Effect.either(log.append("retried", [created("retried")], opts("no_stream", retriedIds))),
          Effect.either(log.append("retried", [created("next")], opts(1)))
        ],
        { concurrency: "unbounded" }
      )
      expect(retried).toEqual(Either.right(first))
      expect(next).toEqual(Either.right({ firstPosition: 5, lastPosition: 5, version: 2 }))
      expect((yield* rows(yield* session(direct))).map((r) => r.name)).toEqual(["retried", "taken", "fresh", "other", "next"])
      expect(yield* verify().pipe(Effect.provide(ctx))).toMatchObject({ ok: true, count: 5 })
    }))

  it.scopedLive("a stale belief (CN001) in a batch with a refused projection: the rest commit, and the writer goes on", () =>
    Effect.gen(function* () {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      // An inline projection that Postgres refuses for a name already taken (a unique key).
      const unique: Projection<ProjectionSql> = {
        name: "unique_names",
        mode: "inline",
        apply: (events) =>
          Effect.forEach(events, (e) =>
            Effect.flatMap(ProjectionSql, (q) =>
              q.execute(`insert into unique_names (name) values ($1)`, [(e.event as WorkspaceCreated).name])), { discard: true }),
        reset: Effect.void
      }
      const options = { inline: [StreamHeads.projection, unique] }
      const a = yield* Layer.build(logOn(url, options))
      yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(`create table unique_names (name text primary key)`)).pipe(
        Effect.provide(a)
      )
      const b = yield* Layer.build(logOn(url, options))
      const logA = Context.get(a, EventLog)
      yield* append(a, "a", "a-warm", opts("any"))
      yield* append(b, "b", "dup", opts("any")) // a's belief is now stale
      const batch = yield* Effect.all(
        ["x1", "dup", "x2"].map((name, i) => Effect.either(logA.append(`batch-${i}`, [created(name)], opts("no_stream")))),
        { concurrency: "unbounded" }
      )
      expect(batch.map((r) => (Either.isRight(r) ? "stored" : (r.left as { reason?: string }).reason))).toEqual([
        "stored",
        "Rejected",
        "stored"
      ])
      // The writer's connection and its prepared statements are fine afterwards, on both paths.
      for (let i = 0; i < 3; i++) {
        yield* append(a, "a", `a-${i}`, opts(2 * i + 1)) // after b's: CN001, slow path
        yield* append(a, "a", `a-${i}-fast`, opts(2 * i + 2)) // fast path
        yield* append(b, "b", `b-${i}`, opts(i + 1))
      }
      const names = (yield* rows(yield* session(url))).map((r) => r.name)
      expect(names.slice(0, 4)).toEqual(["a-warm", "dup", ...(names[2] === "x1" ? ["x1", "x2"] : ["x2", "x1"])])
      expect(names).toHaveLength(13)
      expect(yield* verify().pipe(Effect.provide(a))).toMatchObject({ ok: true, count: 13 })
    }))
})
