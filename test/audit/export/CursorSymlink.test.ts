/**
 * The cursor is written beside itself (`<cursor>.tmp`) and renamed over it. Whoever can write in the cursor's
 * directory (a shared spool directory, a careless `--cursor` in a group-writable place) must not be able to point
 * that name at another file and have the exporter, often run as root from cron, overwrite it.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Cursor from "../../../audit/export/Cursor.ts"

describe("cursor file write", () => {
  it.scoped("does not follow a link planted at its temporary name, and still writes the cursor", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-cursor-link-"))),
        (d) => Effect.sync(() => Fs.rmSync(d, { recursive: true, force: true }))
      )
      const victim = Path.join(dir, "victim")
      Fs.writeFileSync(victim, "precious\n")
      const path = Path.join(dir, "export.cursor")
      Fs.symlinkSync(victim, `${path}.tmp`)
      yield* Cursor.write(path, { position: 7, hash: "ab".repeat(32) }).pipe(Effect.ignore)
      expect(Fs.readFileSync(victim, "utf8")).toBe("precious\n")
      // A stale temporary (a crash mid-write, or a planted link) does not stop the next cursor from being written.
      yield* Cursor.write(path, { position: 8, hash: "cd".repeat(32) })
      expect(Fs.readFileSync(victim, "utf8")).toBe("precious\n")
      const read = yield* Cursor.read(path)
      expect(read._tag === "Some" && read.value.position).toBe(8)
    }))
})
