/**
 * `connect audit verify --checkpoint` is the auditor's check that does not trust the operator. Whoever controls the
 * database's configuration (a superuser, or the database's owner: ALTER DATABASE … SET search_path) can put an `=`
 * on bytea ahead of pg_catalog's that answers true, and then Postgres's own recomputation of the chain sees no altered
 * row. A note must still fail on an altered row before its position: the chain up to it is recomputed by the verifier
 * from the rows, not by the server.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as PgClient from "@effect/sql-pg/PgClient"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Effect, Either, Exit, Layer, Scope } from "effect"
import * as CheckpointNote from "../../core/CheckpointNote.ts"
import { EventLog } from "../../core/EventLog.ts"
import { EventMeta, WorkspaceCreated } from "../../core/Events.ts"
import { uuidv7, WorkspaceId } from "../../core/Ids.ts"
import * as SignedNote from "../../core/SignedNote.ts"
import * as SigningKeys from "../../core/SigningKeys.ts"
import * as Database from "../../hub/db/Database.ts"
import * as Migrations from "../../hub/db/Migrations.ts"
import * as PgEventLog from "../../hub/eventlog/PgEventLog.ts"
import * as Main from "../../hub/Main.ts"
import { killTracked, spawn } from "../support/processes.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

let scope: Scope.CloseableScope
let url: string
let home: string

beforeAll(async () => {
  scope = Effect.runSync(Scope.make())
  url = await Effect.runPromise(Scope.extend(TestDatabase.makeTestDatabaseUrl, scope))
  home = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-e2e-checkpoint-trust-"))
})

afterAll(async () => {
  killTracked()
  Fs.rmSync(home, { recursive: true, force: true })
  await Effect.runPromise(Scope.close(scope, Exit.void))
})

const key = SigningKeys.generate("trust.example/connect", new Date())

/** Six events on a migrated log, and a note signed over its head. */
const seed = () => Effect.gen(function*() {
  yield* Migrations.run
  const log = yield* EventLog
  for (let i = 0; i < 6; i++) {
    yield* log.append(`c-${i}`, [new WorkspaceCreated({ workspaceId: WorkspaceId.make(uuidv7()), name: `w${i}` })], {
      expectedVersion: "any",
      workspaceId: null,
      meta: new EventMeta({ actor: { kind: "admin", id: "test" } })
    })
  }
  const head = yield* log.head
  const text = CheckpointNote.format({ origin: "trust.example/connect", position: head.position, headHash: Buffer.from(head.hash).toString("hex") })
  return Either.getOrThrow(SignedNote.sign(text, [SigningKeys.signerOf(key)]))
}).pipe(
  Effect.provide(PgEventLog.layer({ inline: Main.INLINE_PROJECTIONS }).pipe(Layer.provideMerge(PgClient.layer(Database.pgClientConfig(url))))),
  Effect.scoped
)

const verify = async (...more: ReadonlyArray<string>) => {
  const run = spawn(process.execPath, ["bin/connect.js", "audit", "verify", ...more], { env: { ...process.env, CONNECT_HOME: home, DATABASE_URL: url } })
  return { ...(await run.exited(60_000)), out: run.stdout() + run.stderr() }
}

describe("verify --checkpoint against a database that lies", () => {
  it("an altered row before the note's position fails the note even when the server's own recomputation says OK", async () => {
    const note = Path.join(home, "6.note")
    Fs.writeFileSync(note, await Effect.runPromise(seed()))
    const vkey = SignedNote.formatVerifierKey(SigningKeys.verifierOf(key))
    expect((await verify("--checkpoint", note, "--key", vkey)).code).toBe(0)

    // Row 3 edited, no hash recomputed: the stored hash at the note's position is still the note's.
    await TestDatabase.queryOnce(url, `
      alter table events disable trigger events_no_update_delete;
      update events set data = jsonb_set(data, '{name}', '"rewritten"') where position = 3;
      alter table events enable trigger events_no_update_delete;
      create schema evil;
      create function evil.bytea_eq_always(bytea, bytea) returns boolean language sql immutable as 'select true';
      create operator evil.= (leftarg = bytea, rightarg = bytea, function = evil.bytea_eq_always);
      do $$ begin
        execute format('alter database %I set search_path = evil, pg_catalog, "$user", public', current_database());
      end $$`)
    // The server's own check is fooled (what the default verify relies on)…
    const plain = await verify()
    expect(plain.code, plain.out).toBe(0)
    // …the auditor's note is not.
    const checked = await verify("--checkpoint", note, "--key", vkey)
    expect(checked.code, checked.out).toBe(3)
    expect(checked.out).toMatch(/checkpoint .*FAILED/)
  }, 120_000)
})
