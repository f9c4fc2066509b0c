/**
 * The hub's spool is opened only under the hub id's lock (PgHubLock.ts). Opening a spool cuts a torn last line (a
 * write its hub did not finish) and removes a stale offset: a second hub started on the running hub's data directory
 * (a second `connect hub` on it with `DATABASE_URL` set) must refuse to start before it touches the running hub's
 * spool, whose last line may be a write still in progress.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Layer } from "effect"
import * as Main from "../../../hub/Main.ts"
import * as Hub from "../../support/Hub.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"

describe("the hub's spool", () => {
  it.scopedLive("a second hub on the running hub's data directory refuses to start without cutting its spool's last line", () =>
    Effect.gen(function*() {
      const databaseUrl = yield* TestDatabase.makeTestDatabaseUrl
      const first = yield* Hub.start({ databaseUrl })
      // The running hub is writing a spool line: its first bytes are in the file, the rest and the newline not yet.
      const file = Path.join(first.dataDir, "spool", "spool.jsonl")
      const partial = `{"id":"0190f5c2-0000-7000-8000-000000000001","stream":"tunnel-`
      Fs.writeFileSync(file, partial)

      const second = yield* Effect.exit(Effect.scoped(
        Layer.build(Main.HubLive({ host: "127.0.0.1", port: 0, dataDir: first.dataDir, databaseUrl }))
      ).pipe(Effect.timeout("60 seconds")))
      expect(Exit.isFailure(second) && Cause.pretty(second.cause)).toMatch(/hub id|another hub/i)
      expect(Fs.readFileSync(file, "utf8")).toBe(partial)
    }), 120_000)
})
