/**
 * The writer's pipeline against a real Postgres: values written in as literals arrive exactly as node-postgres would
 * have bound them, statements run in order in one message, and a failed message leaves the connection usable.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import Pg from "pg"
import * as PgPipeline from "../../../hub/eventlog/PgPipeline.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"

const client = (url: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const c = new Pg.Client({ connectionString: url })
      await c.connect()
      return c
    }),
    (c) => Effect.promise(() => c.end())
  )

// Strings that need every kind of quoting: quotes, backslashes (E'' constants), newlines, unicode, `$1` look-alikes.
const awkward = [
  "plain",
  "it's",
  "back\\slash",
  "both ' and \\",
  "\\x00 not bytea",
  "line\nbreak\ttab",
  "ünï😀",
  "$1 $$ $tag$",
  "",
  "\"quoted\" {braces,commas}"
]

describe("PgPipeline", () => {
  it.scopedLive("literals arrive as bound parameters would, for text, arrays, bytea, numbers, dates and NULL", () =>
    Effect.gen(function* () {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      const c = yield* client(url)
      const pipeline = PgPipeline.make(c)
      const when = new Date("2026-11-23T12:34:56.789Z")
      const bytes = Buffer.from([0, 1, 0x5c, 0x27, 0xff])
      const text = `select $1::text as t, $2::text[] as a, $3::bytea as b, $4::bytea[] as ba, $5::bigint as n,
        $6::timestamptz as d, $7::uuid as u, $8::int[] as ia`
      const params = (s: string) => [s, [s, null, "x"], bytes, [bytes, null], 9007199254740991, when, null, [1, null, -3]]
      // Once as servers are configured by default, once with the legacy backslash escapes in plain constants.
      for (const setting of ["on", "off"]) {
        yield* Effect.promise(() => c.query(`set standard_conforming_strings = ${setting}`))
        for (const s of awkward) {
          const bound = (yield* Effect.promise(() => c.query(text, params(s)))).rows[0]
          const i = pipeline.add(text, params(s))
          const inlined = (yield* pipeline.send)[i]![0]
          expect(inlined).toEqual(bound)
          expect(inlined!.t).toBe(s)
        }
      }
      expect(() => PgPipeline.literal("nul\u0000")).toThrow(/U\+0000/)
    })
  )

  it.scopedLive("runs a message's statements in order, stops at the first error, and recovers in one message", () =>
    Effect.gen(function* () {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      const c = yield* client(url)
      const pipeline = PgPipeline.make(c)
      yield* Effect.promise(() => c.query(`create table seen (n int primary key)`))
      pipeline.addRaw("begin")
      pipeline.add(`insert into seen values ($1)`, [1])
      pipeline.add(`insert into seen values ($1)`, [1])
      pipeline.add(`insert into seen values ($1)`, [2])
      pipeline.addRaw("commit")
      const failed = yield* Effect.flip(pipeline.send)
      expect(failed.message).toMatch(/duplicate key/)
      yield* pipeline.recover("rollback")
      expect((yield* Effect.promise(() => c.query(`select count(*)::int as n from seen`))).rows[0]).toEqual({ n: 0 })
      // The statements are prepared again after recovering.
      pipeline.add(`insert into seen values ($1)`, [3])
      const i = pipeline.add(`select array_agg(n order by n) as all from seen`)
      expect((yield* pipeline.send)[i]).toEqual([{ all: [3] }])
    })
  )
})
