/**
 * The writer's one-round-trip append: it computes an append from the head it last committed, and `connect_append`
 * checks that belief under the lock. Each way the belief can be wrong — another writer appended, a stream it never saw
 * has events, an id is stored already, its clock is off — must end in the right answer through the slow path, never
 * in a refusal, a duplicate or a broken chain.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Layer } from "effect"
import { verify } from "../../../audit/Verify.ts"
import { uuidv7 } from "../../../core/Ids.ts"
import * as PgEventLog from "../../../hub/eventlog/PgEventLog.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"
import { append, logOn, opts } from "../../support/WriterAttack.ts"

describe("the writer's belief about the head", () => {
  it.scopedLive("a stream another writer filled, unknown to this one, is appended at its real version", () =>
    Effect.gen(function* () {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      const a = yield* Layer.build(logOn(url))
      const b = yield* Layer.build(logOn(url))
      for (let i = 0; i < 3; i++) yield* append(a, "shared", `a-${i}`, opts("any"))
      // b learns the head (after a's three events) through an append of its own to another stream…
      yield* append(b, "elsewhere", "b-0", opts("any"))
      // …so its next append is computed from that head, with a guess for "shared", which it never saw: version 0.
      const result = yield* append(b, "shared", "b-1", opts("any"))
      expect(result).toMatchObject({ version: 4, lastPosition: 5 })
      const conflict = yield* Effect.either(append(b, "shared", "b-2", opts(2)))
      expect(Either.isLeft(conflict) && conflict.left._tag).toBe("VersionConflict")
      expect(yield* verify().pipe(Effect.provide(a))).toMatchObject({ ok: true, count: 5 })
    }))

  it.scopedLive("an append repeated with the same ids answers with what is stored, once, from a writer that knows the head", () =>
    Effect.gen(function* () {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      const a = yield* Layer.build(logOn(url))
      yield* append(a, "warm", "w", opts("any"))
      const ids = [uuidv7()]
      const first = yield* append(a, "retried", "r", opts("no_stream", ids))
      const again = yield* append(a, "retried", "r", opts("no_stream", ids))
      expect(again).toEqual(first)
      const rows = yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(`select count(*)::int as n from events`)).pipe(
        Effect.provide(a)
      )
      expect(rows[0]).toEqual({ n: 2 })
    }))

  it.scopedLive("writers taking turns one event at a time keep one chain, each finding the head moved every time", () =>
    Effect.gen(function* () {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      const a = yield* Layer.build(logOn(url))
      const b = yield* Layer.build(logOn(url))
      for (let i = 0; i < 50; i++) {
        yield* append(a, "turns", `a-${i}`, opts(2 * i))
        yield* append(b, "turns", `b-${i}`, opts(2 * i + 1))
      }
      expect(yield* verify().pipe(Effect.provide(a))).toMatchObject({ ok: true, count: 100 })
    }))

  it.scopedLive("connect_append refuses a stale head, a wrong guess, a stored id and a clock a minute off, touching nothing", () =>
    Effect.gen(function* () {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      const a = yield* Layer.build(logOn(url))
      const stored = yield* append(a, "s", "one", opts("any"))
      const head = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql.unsafe<{ hash: Uint8Array; id: string }>(`select hash, id::text as id from events where position = 1`)
      ).pipe(Effect.provide(a))
      const call = (position: number, hash: Uint8Array, guess: [string, number] | undefined, ids: Array<string>, at: Date) =>
        Effect.flatMap(SqlClient.SqlClient, (sql) =>
          sql.unsafe(
            `select connect_append($1, $2, $3, $4::text[], $5::int[], $6::uuid[], '{}', '{}', '{}', '{}', '{}', '{}', '', '', $7, '{}', '{}', '5 seconds')`,
            [PgEventLog.APPEND_LOCK_KEY, position, Buffer.from(hash), guess ? [guess[0]] : [], guess ? [guess[1]] : [], ids, at]
          )
        ).pipe(
          Effect.provide(a),
          Effect.match({ onSuccess: () => "ok", onFailure: (e) => String((e.cause as { code?: string }).code) })
        )
      const now = new Date()
      expect(stored.lastPosition).toBe(1)
      expect(yield* call(1, head[0]!.hash, undefined, [], now)).toBe("ok")
      expect(yield* call(0, new Uint8Array(32), undefined, [], now)).toBe("CN001")
      expect(yield* call(1, new Uint8Array(32), undefined, [], now)).toBe("CN001")
      expect(yield* call(1, head[0]!.hash, ["s", 0], [], now)).toBe("CN002")
      expect(yield* call(1, head[0]!.hash, ["s", 1], [], now)).toBe("ok")
      expect(yield* call(1, head[0]!.hash, undefined, [head[0]!.id], now)).toBe("CN003")
      expect(yield* call(1, head[0]!.hash, undefined, [], new Date(Date.now() - 120_000))).toBe("CN004")
    }))
})
