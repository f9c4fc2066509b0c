/**
 * Signed checkpoints as an operator and an auditor use them, through the real `connect` binary: the hub prints its
 * public key at first start and writes a note after --checkpoint-every events; `connect audit verify --checkpoint`
 * with that key says OK; after a key rotation the old note still verifies; a note checked against a stranger's key
 * does not; and once a superuser rewrites history (every hash recomputed, so the chain alone still verifies) the note
 * fails, exit 3.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Effect, Exit, Scope } from "effect"
import Pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { killTracked, spawn } from "../support/processes.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

let scope: Scope.CloseableScope
let url: string
let home: string
let env: NodeJS.ProcessEnv

beforeAll(async () => {
  scope = Effect.runSync(Scope.make())
  url = await Effect.runPromise(Scope.extend(TestDatabase.makeTestDatabaseUrl, scope))
  home = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-e2e-checkpoint-"))
  env = { ...process.env, CONNECT_HOME: home, DATABASE_URL: url }
})

afterAll(async () => {
  killTracked()
  Fs.rmSync(home, { recursive: true, force: true })
  await Effect.runPromise(Scope.close(scope, Exit.void))
})

const connect = (...args: ReadonlyArray<string>) => spawn(process.execPath, ["bin/connect.js", ...args], { env })

const VKEY = /^ {4}(e2e\.example\/connect\+([0-9a-f]{8})\+[A-Za-z0-9+/=]+)$/m

/** As a superuser: row 2 edited and every hash after it recomputed, so the chain holds again. */
const rewriteHistory = async () => {
  const client = new Pg.Client({ connectionString: url })
  await client.connect()
  try {
    await client.query(`
      alter table events disable trigger events_no_update_delete;
      update events set meta = jsonb_set(meta, '{actor,id}', '"someone-else"') where position = 2;
      do $$
      declare r record; prev bytea;
      begin
        select hash into prev from events where position = 1;
        for r in select * from events where position >= 2 order by position loop
          update events set prev_hash = prev,
            hash = connect_event_hash(prev, r.position, r.id, r.stream, r.version, r.workspace_id, r.type, r.data, r.meta, r.recorded_at)
          where position = r.position returning hash into prev;
        end loop;
      end $$;
      alter table events enable trigger events_no_update_delete`)
  } finally {
    await client.end()
  }
}

describe("signed checkpoints (real processes)", () => {
  it("the hub prints its key and signs after N events; verify --checkpoint holds, then fails on a rewritten log", async () => {
    const hub = connect("hub", "--port", "0", "--checkpoint-every", "3", "--checkpoint-origin", "e2e.example/connect")
    const [, vkey, keyId] = await hub.waitFor(VKEY, 90_000)
    // The bootstrap's two events and the key's make three: the first note.
    const note = Path.join(home, "hub", "checkpoints", "3.note")
    await hub.waitFor(/checkpoint signed at position 3/, 30_000)
    expect(Fs.readFileSync(note, "utf8")).toMatch(new RegExp(`^e2e\\.example/connect\\n3\\n[0-9a-f]{64}\\n\\n\u2014 e2e\\.example/connect \\S+\\n$`))
    expect(Fs.statSync(Path.join(home, "hub", "checkpoint-keys.json")).mode & 0o777).toBe(0o600)
    expect(hub.stdout()).not.toContain(JSON.parse(Fs.readFileSync(Path.join(home, "hub", "checkpoint-keys.json"), "utf8")).keys[0].seed)
    hub.child.kill("SIGTERM")
    expect(await hub.exited(30_000)).toEqual({ code: 0, signal: null })

    const ok = connect("audit", "verify", "--checkpoint", note, "--key", vkey!)
    expect(await ok.exited(60_000)).toEqual({ code: 0, signal: null })
    expect(ok.stdout()).toMatch(/^OK: 4 events, hash chain intact/m)
    expect(ok.stdout()).toContain(`checkpoint ${note}: OK, signed by e2e.example/connect+${keyId}: the log holds position 3 unchanged`)

    // A new key; the old one, retired, still verifies the old note (keys from the data directory).
    const rotate = connect("audit", "rotate-key")
    expect(await rotate.exited(60_000)).toEqual({ code: 0, signal: null })
    const pubkey = connect("audit", "pubkey")
    expect(await pubkey.exited(60_000)).toEqual({ code: 0, signal: null })
    const keys = pubkey.stdout().split("\n").filter((l) => !l.startsWith("#") && l !== "")
    expect(keys).toHaveLength(2)
    expect(keys[1]).toBe(vkey)
    expect(pubkey.stdout()).toMatch(/^# retired .*still verifies the notes it signed$/m)
    const own = connect("audit", "verify", "--checkpoint", note)
    expect(await own.exited(60_000)).toEqual({ code: 0, signal: null })

    // The auditor's key is not the one that signed: refused.
    const stranger = connect("audit", "verify", "--checkpoint", note, "--key", keys[0]!)
    expect((await stranger.exited(60_000)).code).toBe(3)
    expect(stranger.stdout()).toMatch(/FAILED: the note does not verify: the note is signed by no key given/)
    const badKey = connect("audit", "verify", "--checkpoint", note, "--key", "not-a-key")
    expect((await badKey.exited(60_000)).code).toBe(2)

    await rewriteHistory()
    const chainOnly = connect("audit", "verify")
    expect(await chainOnly.exited(60_000)).toEqual({ code: 0, signal: null })
    const broken = connect("audit", "verify", "--checkpoint", note, "--key", vkey!)
    expect((await broken.exited(60_000)).code).toBe(3)
    expect(broken.stdout()).toMatch(/^checkpoint .*3\.note: FAILED, signed by .*: the log's hash at position 3 is [0-9a-f]{16}…, the note's [0-9a-f]{16}…: the log was rewritten$/m)
  }, 400_000)
})
