/**
 * The per-statement chain check (migration 0009) attacked with what the hub's role may do on `events`: insert with any
 * statement shape. Each case is checked against what `connect audit verify` says afterwards.
 */
import { describe, expect, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import { Effect, Layer } from "effect"
import { verify } from "../../../audit/Verify.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"
import { append, attempt, logOn, opts, query, session, writerRoleUrl } from "../../support/WriterAttack.ts"

// A row's columns computed in SQL from its position and predecessor hash, with a hash that is right for its values.
const rowSql = (position: string, prevHash: string, name: string) =>
  `select ${position}::bigint as position, gen_random_uuid() as id, 'attack' as stream, ${position}::int as version,
          null::uuid as workspace_id, 'WorkspaceCreated' as type,
          jsonb_build_object('name', '${name}', 'workspaceId', gen_random_uuid()::text) as data,
          '{"actor":{"kind":"system"}}'::jsonb as meta,
          date_trunc('milliseconds', now()) as recorded_at, ${prevHash} as prev_hash`

const insertRows = (source: string) =>
  `insert into events (position, id, stream, version, workspace_id, type, data, meta, recorded_at, prev_hash, hash)
   select position, id, stream, version + 1000, workspace_id, type, data, meta, recorded_at, prev_hash,
          connect_event_hash(prev_hash, position, id, stream, version + 1000, workspace_id, type, data, meta, recorded_at)
     from (${source}) r`

/** Runs psql on `url`; its output, or "ok" for a command without rows, or the error text. */
const psql = (url: string, args: Array<string>, input?: string): string => {
  try {
    const out = execFileSync("psql", [url, ...args], { input: input ?? "", encoding: "utf8", stdio: ["pipe", "pipe", "pipe"] })
    return out.startsWith("COPY") || out === "" ? "ok" : out.trim()
  } catch (e) {
    return String((e as { stderr?: string }).stderr ?? e)
  }
}

describe("the per-statement chain check, as the hub's role", () => {
  it.scopedLive("refuses, in any statement shape, a row verify would report; a valid one passes", () =>
    Effect.gen(function* () {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      const log = yield* Layer.build(logOn(url))
      for (let i = 0; i < 3; i++) yield* append(log, "s", `e${i}`, opts("any"))
      const writerUrl = yield* writerRoleUrl(url)
      const writer = yield* session(writerUrl)
      const head = `(select hash from events where position = 3)`
      const zero = `decode(repeat('00', 32), 'hex')`

      // Zero rows: nothing to check, nothing stored.
      expect(yield* attempt(writer, insertRows(`${rowSql("4", head, "none")} where false`))).toBe("ok")
      // Two data-modifying statements on events in one query (a writable CTE): 5 links to 4 by the hash 4's insert
      // returned. Valid: accepted.
      const pair = `with a as (${insertRows(rowSql("4", head, "four"))} returning position, hash)
        ${insertRows(rowSql("5", "(select hash from a)", "five"))}`
      expect(yield* attempt(writer, pair)).toBe("ok")
      // The same with a gap (8 after 6, 7 missing): refused, 6 with it.
      expect(yield* attempt(writer, `with a as (${insertRows(rowSql("6", "(select hash from events where position = 5)", "six"))} returning hash)
        ${insertRows(rowSql("8", "(select hash from a)", "eight"))}`)).toBe("23514")
      // Rows of one statement in descending position order, the later one unlinked: refused.
      const at = (p: number) => `(select hash from events where position = ${p})`
      expect(yield* attempt(
        writer,
        insertRows(`select * from (${rowSql("7", zero, "seven")} union all ${rowSql("6", at(5), "six")}) u order by position desc`)
      )).toBe("23514")
      // The same two rows validly linked (7's prev_hash is 6's hash, computed in the statement), inserted 7 first.
      const six = `select r.*, connect_event_hash(prev_hash, position, id, stream, version + 1000, workspace_id, type, data, meta, recorded_at) as h
                     from (${rowSql("6", at(5), "six")}) r`
      expect(yield* attempt(
        writer,
        `with s as (${six}) ${insertRows(`select * from (${rowSql("7", "(select h from s)", "seven")} union all
           select position, id, stream, version, workspace_id, type, data, meta, recorded_at, prev_hash from s) u
           order by position desc`)}`
      )).toBe("ok")
      // Two statements in one transaction: the second's first row links to the first's row. Valid: accepted.
      yield* Effect.promise(() => writer.query("begin"))
      expect(yield* attempt(writer, insertRows(rowSql("8", at(7), "eight")))).toBe("ok")
      expect(yield* attempt(writer, insertRows(rowSql("9", at(8), "nine")))).toBe("ok")
      yield* Effect.promise(() => writer.query("commit"))
      // COPY: row-level security on events (migration 0012) refuses COPY FROM to the hub's role outright, a valid row
      // as much as a forged one; nothing reaches the log that way.
      const copyRow = (prevHash: string) =>
        psql(writerUrl, ["-At", "-c", `copy (${insertRows(rowSql("10", prevHash, "ten")).replace(/^[\s\S]*?\n\s*select/, "select")}) to stdout`])
      const copyIn = (line: string) => psql(writerUrl, ["-v", "ON_ERROR_STOP=1", "-c", `\\copy events from stdin`], `${line}\n`)
      expect(copyIn(copyRow(zero))).toContain("COPY FROM not supported with row-level security")
      expect(copyIn(copyRow(at(9)))).toContain("COPY FROM not supported with row-level security")

      const result = yield* verify().pipe(Effect.provide(log))
      expect(result).toMatchObject({ ok: true, count: 9 })
    }))
})
