/**
 * The chain check and the append functions name `events` without a schema, and a role without CREATE on any schema
 * may still create a TEMP table (PUBLIC has TEMPORARY on a new database), which would come first in its search path:
 * the hub's role could shadow `events` inside the trigger with a temp table of its own and store rows that
 * `connect audit verify` reports, for good. The functions pin their search path (pg_temp last). Failed before 0009 did.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { verify } from "../../../audit/Verify.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"
import { append, attempt, logOn, opts, session, writerRoleUrl } from "../../support/WriterAttack.ts"

// One row at `position` after `prevHash`, with the hash right for its values (so only the link or the gap is wrong).
const forged = (position: number, prevHash: string) =>
  `insert into public.events (position, id, stream, version, workspace_id, type, data, meta, recorded_at, prev_hash, hash)
   select p, i, 'forged', v, null, 'WorkspaceCreated', d, m, r, ${prevHash},
          connect_event_hash(${prevHash}, p, i, 'forged', v, null, 'WorkspaceCreated', d, m, r)
     from (select ${position}::bigint as p, gen_random_uuid() as i, ${position}::int as v,
                  jsonb_build_object('name', 'forged', 'workspaceId', gen_random_uuid()::text) as d,
                  '{"actor":{"kind":"system"}}'::jsonb as m, date_trunc('milliseconds', now()) as r) x`

describe("the chain check against the hub's own role", () => {
  it.scopedLive("a temp table named events does not let the hub's role store a row verify reports", () =>
    Effect.gen(function* () {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      const log = yield* Layer.build(logOn(url))
      for (let i = 0; i < 3; i++) yield* append(log, "s", `e${i}`, opts("any"))
      const writerUrl = yield* writerRoleUrl(url)
      const fake = `decode(repeat('ab', 32), 'hex')`
      // Without a shadow, both forgeries are refused (the trigger works).
      const plain = yield* session(writerUrl)
      expect(yield* attempt(plain, forged(4, fake))).toBe("23514")
      expect(yield* attempt(plain, forged(5, fake))).toBe("23514")
      // A session of the same role that creates the shadow before its first insert.
      const writer = yield* session(writerUrl)
      // The shadow: a temp table `events` (pg_temp comes first in the search path) whose "head" is what the forgery
      // links to.
      expect(yield* attempt(writer, `create temp table events (like public.events)`)).toBe("ok")
      expect(yield* attempt(writer, `insert into events (position, id, stream, version, type, data, meta, recorded_at, prev_hash, hash)
        values (3, gen_random_uuid(), 'x', 1, 'x', '{}', '{}', now(), ${fake}, ${fake}),
               (5, gen_random_uuid(), 'x', 2, 'x', '{}', '{}', now(), ${fake}, ${fake})`)).toBe("ok")
      // A row at 4 that does not link to 3, and one at 6 after a gap (5 missing): both must be refused.
      const unlinked = yield* attempt(writer, forged(4, fake))
      const afterGap = yield* attempt(writer, forged(6, fake))
      const result = yield* verify().pipe(Effect.provide(log))
      expect({ unlinked, afterGap, ok: result.ok }).toEqual({ unlinked: "23514", afterGap: "23514", ok: true })
    }))
})
