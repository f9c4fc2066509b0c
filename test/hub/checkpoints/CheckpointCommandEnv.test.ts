/**
 * The checkpoint command copies a note off the box (scp, aws s3 cp, curl): it needs none of the hub's database
 * credentials, in whatever form the hub takes them — DATABASE_URL, DATABASE_OWNER_URL, or libpq's PGPASSWORD and
 * friends, which the Postgres client reads when the URL has no password — nor an API key from the environment.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as CheckpointCommand from "../../../hub/checkpoints/CheckpointCommand.ts"

const SECRETS: Record<string, string> = {
  DATABASE_URL: "postgres://hub:secret-1@127.0.0.1/db",
  DATABASE_OWNER_URL: "postgres://owner:secret-2@127.0.0.1/db",
  PGPASSWORD: "secret-3",
  PGPASSFILE: "/root/.pgpass-secret-4",
  PGSERVICEFILE: "/root/.pg_service-secret-5",
  CONNECT_API_KEY: "pc_secret6secret6secret6secret6secret6xx"
}

describe("checkpoint command environment", () => {
  it.scoped("carries no database credential nor API key, and does carry the note's path, position and PATH", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-cpenv-"))),
        (d) => Effect.sync(() => Fs.rmSync(d, { recursive: true, force: true }))
      )
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          const old = Object.fromEntries(Object.keys(SECRETS).map((k) => [k, process.env[k]]))
          Object.assign(process.env, SECRETS)
          return old
        }),
        (old) => Effect.sync(() => {
          for (const [k, v] of Object.entries(old)) v === undefined ? delete process.env[k] : (process.env[k] = v)
        })
      )
      const out = Path.join(dir, "env")
      yield* CheckpointCommand.run(`env > ${out}`, "note\n", "/data/checkpoints/7.note", 7)
      const env = Fs.readFileSync(out, "utf8")
      for (const secret of Object.values(SECRETS)) expect(env).not.toContain(secret)
      expect(env).toContain("CONNECT_CHECKPOINT_FILE=/data/checkpoints/7.note")
      expect(env).toContain("CONNECT_CHECKPOINT_POSITION=7")
      expect(env).toMatch(/^PATH=/m)
    }))
})
