/**
 * No input can produce a stored row whose hash does not verify: ids are normalised where they come in (an upper-case
 * workspace id used to be stored lower-cased by the uuid column but hashed as typed), and Postgres itself refuses a
 * row whose hash or link is not the one `connect audit verify` would compute.
 */
import { describe, expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect, Either } from "effect"
import * as Verify from "../../../audit/Verify.ts"
import { EventLog } from "../../../core/EventLog.ts"
import { hashEnvelope } from "../../../core/HashChain.ts"
import { uuidv7 } from "../../../core/Ids.ts"
import * as Admin from "../../../hub/commands/Admin.ts"
import * as HubLog from "../../support/HubLog.ts"

describe("the hash chain holds whatever the input", () => {
  it.layer(HubLog.layer, { timeout: 60_000 })("on a migrated test database", (it) => {
    it.effect("an API key created with an upper-case workspace id is stored lower-case and verifies", () =>
      Effect.gen(function*() {
        const { workspaceId } = yield* Admin.createWorkspace("upper")
        const key = yield* Admin.createApiKey(workspaceId.toUpperCase(), "typed-upper")
        const sql = yield* SqlClient.SqlClient
        const [row] = yield* sql.unsafe<{ workspace_id: string; data: { workspaceId: string } }>(
          `select workspace_id::text, data from events where type = 'ApiKeyCreated' and data->>'apiKeyId' = $1`,
          [key.apiKeyId]
        )
        expect(row!.data.workspaceId).toBe(workspaceId)
        expect(row!.workspace_id).toBe(workspaceId)
        expect(yield* Verify.verify()).toMatchObject({ ok: true })
        expect(yield* Verify.verify({ independent: true })).toMatchObject({ ok: true })
        // Listing and revoking take the id in any case too.
        const keys = yield* Admin.listApiKeys(workspaceId.toUpperCase())
        expect(keys.map((k) => k.apiKeyId)).toContain(key.apiKeyId)
        expect(yield* Admin.revokeApiKey(key.apiKeyId.toUpperCase())).toEqual({ revoked: true })
        expect(yield* Verify.verify()).toMatchObject({ ok: true })
      }))

    it.effect("an id that is not a UUID is refused with a message naming it, and nothing is appended", () =>
      Effect.gen(function*() {
        const log = yield* EventLog
        const before = (yield* log.head).position
        for (const bad of ["not-a-uuid", "0190e3b0-aaaa-7bbb-8ccc-ddddeeeeffff0", " 0190e3b0-aaaa-7bbb-8ccc-ddddeeeeffff"]) {
          const result = yield* Effect.either(Admin.createApiKey(bad))
          expect(Either.isLeft(result)).toBe(true)
          const error = (result as Either.Left<{ _tag: string; reason: string; message: string }, unknown>).left
          expect(error).toMatchObject({ _tag: "DomainError", reason: "Invalid" })
          expect(error.message).toContain("workspace id must be a UUID")
        }
        expect((yield* log.head).position).toBe(before)
      }))

    it.effect("Postgres refuses a row whose hash is not the one verify computes, or that does not link to the head", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* Admin.createWorkspace("head")
        const [head] = yield* sql.unsafe<{ position: number; hash: Uint8Array }>(
          `select position, hash from events order by position desc limit 1`
        )
        const row = (prevHash: Uint8Array, position = head!.position + 1) => {
          const envelope = {
            position,
            id: uuidv7(),
            stream: "forged",
            version: 1,
            workspaceId: null,
            type: "WorkspaceCreated",
            dataJson: `{"name": "x"}`,
            metaJson: "{}",
            recordedAt: new Date(Math.floor(Date.now())),
            prevHash
          }
          return { envelope, hash: hashEnvelope(envelope) }
        }
        const insert = (r: ReturnType<typeof row>, hash: Uint8Array = r.hash) =>
          sql.unsafe(
            `insert into events (position, id, stream, version, workspace_id, type, data, meta, recorded_at, prev_hash, hash)
             values ($1, $2, $3, $4, null, $5, $6::jsonb, $7::jsonb, $8::timestamptz, $9, $10)`,
            [
              r.envelope.position,
              r.envelope.id,
              r.envelope.stream,
              r.envelope.version,
              r.envelope.type,
              r.envelope.dataJson,
              r.envelope.metaJson,
              r.envelope.recordedAt.toISOString(),
              Buffer.from(r.envelope.prevHash),
              Buffer.from(hash)
            ]
          ).pipe(Effect.either)
        const refusal = (e: Either.Either<unknown, unknown>) =>
          Either.isLeft(e) ? String((e.left as { cause?: { message?: string } }).cause?.message) : "accepted"
        const headHash = Buffer.from(head!.hash)
        // A hash that is not sha256(prev_hash || canonical(row)).
        expect(refusal(yield* insert(row(headHash), Buffer.alloc(32, 0xab)))).toMatch(/hash/)
        // A correct hash over a prev_hash that is not the head's hash.
        expect(refusal(yield* insert(row(Buffer.alloc(32, 0xcd))))).toMatch(/prev_hash|link/)
        // A correct hash at a position past the head (a gap).
        expect(refusal(yield* insert(row(headHash, head!.position + 2)))).toMatch(/position/)
        // In one multi-row statement (the check runs once per statement), a second row that does not link to the
        // first, a gap between them, or a second row with a wrong hash fail the whole statement.
        const insertTwo = (first: ReturnType<typeof row>, second: ReturnType<typeof row>, secondHash = second.hash) =>
          sql.unsafe(
            `insert into events (position, id, stream, version, workspace_id, type, data, meta, recorded_at, prev_hash, hash)
             select p, i, s, v, null, t, d::jsonb, m::jsonb, r, ph, h
               from unnest($1::bigint[], $2::uuid[], $3::text[], $4::int[], $5::text[], $6::text[], $7::text[],
                           $8::timestamptz[], $9::bytea[], $10::bytea[]) as u(p, i, s, v, t, d, m, r, ph, h)`,
            [
              [first.envelope.position, second.envelope.position],
              [first.envelope.id, second.envelope.id],
              ["forged", "forged-2"],
              [1, 1],
              [first.envelope.type, second.envelope.type],
              [first.envelope.dataJson, second.envelope.dataJson],
              [first.envelope.metaJson, second.envelope.metaJson],
              [first.envelope.recordedAt.toISOString(), second.envelope.recordedAt.toISOString()],
              [Buffer.from(first.envelope.prevHash), Buffer.from(second.envelope.prevHash)],
              [Buffer.from(first.hash), Buffer.from(secondHash)]
            ]
          ).pipe(Effect.either)
        const first = row(headHash)
        const streamed = (r: ReturnType<typeof row>) => {
          const envelope = { ...r.envelope, stream: "forged-2" }
          return { envelope, hash: hashEnvelope(envelope) }
        }
        const next = head!.position + 2
        expect(refusal(yield* insertTwo(first, streamed(row(Buffer.alloc(32, 0xcd), next))))).toMatch(/prev_hash/)
        expect(refusal(yield* insertTwo(first, streamed(row(Buffer.from(first.hash), next + 1))))).toMatch(/position/)
        expect(refusal(yield* insertTwo(first, streamed(row(Buffer.from(first.hash), next)), Buffer.alloc(32, 0xab))))
          .toMatch(/hash of position/)
        expect((yield* sql.unsafe<{ n: number }>(`select count(*)::int as n from events`))[0]!.n).toBe(head!.position)
        // The same row where it belongs is accepted: the check computes what the client computed.
        expect(refusal(yield* insert(row(headHash)))).toBe("accepted")
        expect(yield* Verify.verify()).toMatchObject({ ok: true })
      }))
  })
})
