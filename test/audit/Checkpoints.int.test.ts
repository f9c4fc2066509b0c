/**
 * `verify --checkpoint` on a real log: a note holds until a superuser rewrites the chain (an edited row and every hash
 * after it recomputed, so the chain alone still verifies) or cuts the tail; a note signed by a key the auditor does not
 * know, or altered, does not verify. And verify over a range (--from/--to), the hash before it taken as given.
 */
import { describe, expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect, Either } from "effect"
import * as Checkpoints from "../../audit/Checkpoints.ts"
import * as Verify from "../../audit/Verify.ts"
import * as CheckpointNote from "../../core/CheckpointNote.ts"
import { EventLog } from "../../core/EventLog.ts"
import { EventMeta, WorkspaceCreated } from "../../core/Events.ts"
import { uuidv7, WorkspaceId } from "../../core/Ids.ts"
import * as SignedNote from "../../core/SignedNote.ts"
import * as SigningKeys from "../../core/SigningKeys.ts"
import * as HubLog from "../support/HubLog.ts"

const meta = new EventMeta({ actor: { kind: "admin", id: "test" } })
const key = SigningKeys.generate("test.example/connect", new Date())
const trusted = [SigningKeys.verifierOf(key)]

const append = (n: number) =>
  Effect.flatMap(EventLog, (log) =>
    Effect.forEach(Array.from({ length: n }), (_, i) =>
      log.append(`c-${i % 3}`, [new WorkspaceCreated({ workspaceId: WorkspaceId.make(uuidv7()), name: `w${i}` })], {
        expectedVersion: "any",
        workspaceId: null,
        meta
      })))

/** A note over the log's current head, as the hub signs it. */
const signHead = Effect.gen(function*() {
  const head = yield* Effect.flatMap(EventLog, (log) => log.head)
  const text = CheckpointNote.format({ origin: "test.example/connect", position: head.position, headHash: Buffer.from(head.hash).toString("hex") })
  return Buffer.from(Either.getOrThrow(SignedNote.sign(text, [SigningKeys.signerOf(key)])))
})

const check = (note: Uint8Array, verifiers = trusted) =>
  Checkpoints.check("note", note, verifiers, (position) => Verify.verify({ to: position }))

/** As a superuser: triggers off, the statement, triggers on. */
const asSuperuser = (statement: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.unsafe(`alter table events disable trigger events_no_update_delete; ${statement};
                alter table events enable trigger events_no_update_delete`))

/** Edits row `position` and recomputes every hash from it on, so the chain is whole again: history rewritten. */
const rewriteFrom = (position: number) =>
  asSuperuser(`
    update events set data = jsonb_set(data, '{name}', '"rewritten"') where position = ${position};
    do $$
    declare r record; prev bytea;
    begin
      select hash into prev from events where position = ${position - 1};
      for r in select * from events where position >= ${position} order by position loop
        update events set prev_hash = prev,
          hash = connect_event_hash(prev, r.position, r.id, r.stream, r.version, r.workspace_id, r.type, r.data, r.meta, r.recorded_at)
        where position = r.position returning hash into prev;
      end loop;
    end $$`)

describe("verify --checkpoint", () => {
  it.layer(HubLog.layer, { timeout: 120_000 })("on a log a superuser rewrites", (it) => {
    it.effect("a note holds on the log it signed; one by an unknown key or altered does not verify", () =>
      Effect.gen(function*() {
        yield* append(10)
        const note = yield* signHead
        expect(yield* check(note)).toMatchObject({ ok: true, position: 10, signedBy: [`test.example/connect+${key.keyId}`] })
        const stranger = SigningKeys.generate("test.example/connect", new Date())
        expect(yield* check(note, [SigningKeys.verifierOf(stranger)])).toMatchObject({
          ok: false,
          message: expect.stringMatching(/^the note does not verify: the note is signed by no key given/)
        })
        const altered = Buffer.from(Buffer.from(note).toString("utf8").replace("\n10\n", "\n9\n"))
        expect(yield* check(altered)).toMatchObject({ ok: false, message: expect.stringMatching(/does not verify: the signature by .* does not verify/) })
      }))

    it.effect("a rewritten chain verifies on its own, and fails the note", () =>
      Effect.gen(function*() {
        const note = yield* signHead
        yield* append(2)
        yield* rewriteFrom(4)
        expect(yield* Verify.verify()).toMatchObject({ ok: true, count: 12 })
        expect(yield* Verify.verify({ independent: true })).toMatchObject({ ok: true, count: 12 })
        expect(yield* check(note)).toMatchObject({
          ok: false,
          position: 10,
          message: expect.stringMatching(/^the log's hash at position 10 is [0-9a-f]{16}…, the note's [0-9a-f]{16}…: the log was rewritten$/)
        })
      }))

    it.effect("a cut tail fails the note; a note before the cut still holds", () =>
      Effect.gen(function*() {
        const before = yield* signHead // position 12, over the rewritten log
        yield* append(3)
        const after = yield* signHead // position 15
        yield* asSuperuser(`delete from events where position > 13`)
        expect(yield* Verify.verify()).toMatchObject({ ok: true, count: 13 })
        expect(yield* check(after)).toMatchObject({
          ok: false,
          message: "position 15 is no longer in the log (it ends at 13): the log was cut"
        })
        expect(yield* check(before)).toMatchObject({ ok: true, position: 12 })
      }))

    it.effect("a range is verified from the hash before it, as given; --to past the head is a gap", () =>
      Effect.gen(function*() {
        yield* asSuperuser(`update events set data = jsonb_set(data, '{name}', '"x"') where position = 2`)
        expect(yield* Verify.verify()).toMatchObject({ ok: false, position: 2 })
        for (const independent of [false, true]) {
          expect(yield* Verify.verify({ from: 3, independent })).toMatchObject({ ok: true, count: 11, from: 3, to: 13 })
          expect(yield* Verify.verify({ from: 1, to: 1, independent })).toMatchObject({ ok: true, count: 1 })
          const past = yield* Verify.verify({ from: 5, to: 20, independent })
          expect(past).toMatchObject({ ok: false, position: 14, reason: "gap", count: 9 })
          expect(past.ok ? [] : past.breaks.map((b) => [b.position, b.through])).toEqual([[14, 20]])
        }
      }))
  })
})
