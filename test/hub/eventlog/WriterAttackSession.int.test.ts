/**
 * The writer's isolation level (read committed) and synchronous commit travel in every transaction's own message,
 * whatever the database's defaults and whatever became of the session's settings (a pooler's RESET ALL). Under
 * repeatable read `connect_append` would read the head from a snapshot taken before it waited for the append lock,
 * insert at a position another writer had just taken, and its caller would be told Rejected. Failed when they were
 * session settings set once at connect (with a proxy that dropped them).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Fiber, Layer } from "effect"
import Pg from "pg"
import { inject } from "vitest"
import { verify } from "../../../audit/Verify.ts"
import * as PgEventLog from "../../../hub/eventlog/PgEventLog.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"
import { append, logOn, opts, rows, session } from "../../support/WriterAttack.ts"

/** Another process's append, made by hand while it holds the append lock: one valid row after the head. */
const appendAfterHead = `
  insert into events (position, id, stream, version, workspace_id, type, data, meta, recorded_at, prev_hash, hash)
  select h.position + 1, x.i, 'other', 1, null, 'WorkspaceCreated', x.d, x.m, x.r, h.hash,
         connect_event_hash(h.hash, h.position + 1, x.i, 'other', 1, null, 'WorkspaceCreated', x.d, x.m, x.r)
    from (select position, hash from events order by position desc limit 1) h,
         (select gen_random_uuid() as i, jsonb_build_object('name', 'other', 'workspaceId', gen_random_uuid()::text) as d,
                 '{"actor":{"kind":"system"}}'::jsonb as m, date_trunc('milliseconds', clock_timestamp()) as r) x`

describe("the writer's transaction settings", () => {
  it.scopedLive("hold for every append whatever the database's defaults: contention is never a refusal", () =>
    Effect.gen(function* () {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      const name = new URL(url).pathname.slice(1)
      yield* Effect.promise(async () => {
        const c = new Pg.Client({ connectionString: inject("adminDatabaseUrl") })
        await c.connect()
        await c.query(`alter database "${name}" set default_transaction_isolation = 'repeatable read'`)
        await c.query(`alter database "${name}" set synchronous_commit = off`)
        await c.end()
      })
      // The settings travel in each transaction's own message (begin isolation level …; set local …), so neither the
      // database's defaults nor a session that lost its settings (a pooler's RESET ALL) can change them.
      const a = yield* Layer.build(logOn(url))
      yield* append(a, "a", "a1", opts("any"))
      yield* append(a, "a", "a2", opts("any"))

      // Another process holds the append lock while the writer's one-round-trip append waits for it, then appends.
      const holder = yield* session(url)
      yield* Effect.promise(() => holder.query(`begin; select pg_advisory_xact_lock(${PgEventLog.APPEND_LOCK_KEY})`))
      const victim = yield* Effect.fork(Effect.either(append(a, "a", "victim", opts("any"))))
      // Until the writer's connect_append waits for the lock (its snapshot already taken under repeatable read).
      for (let i = 0; i < 100; i++) {
        const [w] = (yield* Effect.promise(() =>
          holder.query<{ n: number }>(`select count(*)::int as n from pg_locks where locktype = 'advisory' and not granted`)
        )).rows
        if (w!.n > 0) break
        yield* Effect.sleep("50 millis")
      }
      yield* Effect.promise(() => holder.query(`${appendAfterHead}; commit`))
      const outcome = yield* Fiber.join(victim)

      const stored = (yield* rows(yield* session(url))).map((r) => r.name)
      expect({
        outcome: Either.isRight(outcome) ? "stored" : `${outcome.left._tag}: ${outcome.left.message.slice(0, 90)}`,
        stored
      }).toEqual({ outcome: "stored", stored: ["a1", "a2", "other", "victim"] })
      expect(yield* verify().pipe(Effect.provide(a))).toMatchObject({ ok: true, count: 4 })
    }))
})
