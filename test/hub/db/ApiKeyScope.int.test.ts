import { describe, expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect, Layer } from "effect"
import { EventLog } from "../../../core/EventLog.ts"
import * as E from "../../../core/Events.ts"
import { ApiKeyId, Streams, uuidv7, WorkspaceId } from "../../../core/Ids.ts"
import { sha256Hex } from "../../../core/Secrets.ts"
import * as Admin from "../../../hub/commands/Admin.ts"
import * as Bootstrap from "../../../hub/commands/Bootstrap.ts"
import * as Migrations from "../../../hub/db/Migrations.ts"
import * as Main from "../../../hub/Main.ts"
import * as PgEventLog from "../../../hub/eventlog/PgEventLog.ts"
import * as ProjectionRunner from "../../../hub/eventlog/ProjectionRunner.ts"
import * as ApiKeys from "../../../hub/readmodels/ApiKeys.ts"
import * as HubLog from "../../support/HubLog.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"

const hash = (s: string) => E.Sha256Hex.make(sha256Hex(s))

/** Appends the events a build without scopes wrote: a bootstrap key, an admin key, and one claiming to be the bootstrap. */
const legacyKeys = Effect.gen(function*() {
  const log = yield* EventLog
  const ws = WorkspaceId.make(uuidv7())
  const [boot, admin, forged] = [ApiKeyId.make(uuidv7()), ApiKeyId.make(uuidv7()), ApiKeyId.make(uuidv7())]
  const key = (apiKeyId: ApiKeyId, name: string) =>
    new E.ApiKeyCreated({ apiKeyId, workspaceId: ws, name, prefix: "pc_legacy0", keyHash: hash(name) })
  const bootstrap = new E.EventMeta({ actor: { kind: "system", id: "bootstrap" } })
  yield* log.append(Streams.workspace(ws), [new E.WorkspaceCreated({ workspaceId: ws, name: "old" }), key(boot, "boot")], {
    expectedVersion: "no_stream",
    workspaceId: ws,
    meta: bootstrap
  })
  yield* log.append(Streams.apiKey(admin), [key(admin, "admin")], {
    expectedVersion: "no_stream",
    workspaceId: ws,
    meta: new E.EventMeta({ actor: { kind: "admin" } })
  })
  // The bootstrap's actor on a key outside the workspace's own stream is not the bootstrap key.
  yield* log.append(Streams.apiKey(forged), [key(forged, "forged")], { expectedVersion: "no_stream", workspaceId: ws, meta: bootstrap })
  return { ws, boot, admin, forged }
})

const scopes = (ids: ReadonlyArray<string>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.unsafe<{ id: string; scope: string }>(`select id, scope from api_keys where id = any($1::uuid[])`, [ids])).pipe(
      Effect.map((rows) => Object.fromEntries(rows.map((r) => [r.id, r.scope])))
    )

describe("API key scopes", () => {
  it.layer(HubLog.layer, { timeout: 60_000 })((it) => {
    it.effect("a new key is a workspace key unless made operator; the bootstrap key is the operator's", () =>
      Effect.gen(function*() {
        const boot = yield* Bootstrap.run()
        if (!boot.created) throw new Error("bootstrap did not run")
        expect((yield* ApiKeys.byHash(sha256Hex(boot.apiKey)))?.scope).toBe("operator")
        const plain = yield* Admin.createApiKey(boot.workspaceId, "ci")
        const ops = yield* Admin.createApiKey(boot.workspaceId, "ops", "operator")
        expect([plain.scope, ops.scope]).toEqual(["workspace", "operator"])
        expect((yield* ApiKeys.byHash(sha256Hex(plain.key)))?.scope).toBe("workspace")
        expect((yield* ApiKeys.byHash(sha256Hex(ops.key)))?.scope).toBe("operator")
        const listed = yield* Admin.listApiKeys(boot.workspaceId)
        expect(listed.map((k) => [k.name, k.scope])).toEqual([["bootstrap admin", "operator"], ["ci", "workspace"], ["ops", "operator"]])
      }))

    it.effect("keys created before scopes read as workspace keys, the bootstrap key as operator, and a rebuild agrees", () =>
      Effect.gen(function*() {
        const { admin, boot, forged } = yield* legacyKeys
        const expected = { [boot]: "operator", [admin]: "workspace", [forged]: "workspace" }
        expect(yield* scopes([boot, admin, forged])).toEqual(expected)
        const sql = yield* SqlClient.SqlClient
        const live = yield* sql.unsafe(`select * from api_keys order by id`)
        yield* ProjectionRunner.rebuild(ApiKeys.projection, { pageSize: 2 })
        expect(yield* sql.unsafe(`select * from api_keys order by id`)).toEqual(live)
        expect(yield* scopes([boot, admin, forged])).toEqual(expected)
      }))
  })

  // A database migrated and written by a build without scopes, then migrated by this one.
  const oldLog = PgEventLog.layer({ inline: Main.INLINE_PROJECTIONS.filter((p) => p.name !== "api_keys") }).pipe(
    Layer.provideMerge(Layer.effectDiscard(Migrations.upTo(10))),
    // A database of its own: it.layer memoizes a layer shared by reference across the file.
    Layer.provideMerge(TestDatabase.layerWith()),
    Layer.orDie
  )
  it.layer(oldLog, { timeout: 60_000 })((it) => {
    it.effect("migration 0012 gives the existing keys the scopes the projection would", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const { admin, boot, forged } = yield* legacyKeys
        // The old build's projection of these keys (without the scope column).
        for (const [id, name] of [[boot, "boot"], [admin, "admin"], [forged, "forged"]] as const) {
          yield* sql.unsafe(
            `insert into api_keys (id, workspace_id, name, prefix, key_hash, created_at) select $1::uuid, workspace_id, $2, 'pc_legacy0', $3, now() from events where data->>'apiKeyId' = $1::text`,
            [id, name, hash(name)]
          )
        }
        yield* Migrations.run
        expect(yield* scopes([boot, admin, forged])).toEqual({ [boot]: "operator", [admin]: "workspace", [forged]: "workspace" })
      }))
  })
})
