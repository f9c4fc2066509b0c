/**
 * Verify lists every break, the same in the database and in this process, whatever the page boundaries: gaps that
 * span ranges are one break, a row after a gap or with a bad link still has its hash checked.
 */
import { describe, expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import * as Verify from "../../audit/Verify.ts"
import { EventLog } from "../../core/EventLog.ts"
import { EventMeta, WorkspaceCreated } from "../../core/Events.ts"
import { uuidv7, WorkspaceId } from "../../core/Ids.ts"
import * as HubLog from "../support/HubLog.ts"

const meta = new EventMeta({ actor: { kind: "admin", id: "test" } })

describe("Verify", () => {
  it.layer(HubLog.layer, { timeout: 60_000 })("on a tampered log", (it) => {
    it.effect("names every break with any page size, in both modes", () =>
      Effect.gen(function*() {
        const log = yield* EventLog
        for (let i = 1; i <= 30; i++) {
          yield* log.append(`v-${i % 3}`, [new WorkspaceCreated({ workspaceId: WorkspaceId.make(uuidv7()), name: `w${i}` })], {
            expectedVersion: "any",
            workspaceId: null,
            meta
          })
        }
        expect(yield* Verify.verify({ pageSize: 5 })).toMatchObject({ ok: true, count: 30 })
        const sql = yield* SqlClient.SqlClient
        yield* sql.unsafe(`alter table events disable trigger events_no_update_delete`)
        yield* sql.unsafe(`delete from events where position between 9 and 16 or position = 20`)
        yield* sql.unsafe(`update events set data = jsonb_set(data, '{name}', '"x"') where position in (3, 22)`)
        yield* sql.unsafe(`update events set prev_hash = decode(repeat('22', 32), 'hex') where position = 27`)
        yield* sql.unsafe(`alter table events enable trigger events_no_update_delete`)
        const expected = [
          { position: 3, reason: "hash_mismatch" },
          { position: 9, reason: "gap", through: 16 },
          { position: 20, reason: "gap", through: 20 },
          { position: 22, reason: "hash_mismatch" },
          { position: 27, reason: "broken_link" },
          { position: 27, reason: "hash_mismatch" }
        ]
        const shape = (r: Verify.VerifyResult) =>
          r.ok ? [] : r.breaks.map((b) => (b.through === undefined ? { position: b.position, reason: b.reason } : { position: b.position, reason: b.reason, through: b.through }))
        for (const pageSize of [1, 4, 5, 7, 100]) {
          expect(shape(yield* Verify.verify({ pageSize }))).toEqual(expected)
          expect(shape(yield* Verify.verify({ pageSize, independent: true }))).toEqual(expected)
        }
        expect(yield* Verify.verify()).toMatchObject({ ok: false, position: 3, count: 2, truncated: false })
      }))
  })
})
