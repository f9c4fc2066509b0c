/**
 * The cursor file: what it holds round-trips; a file that is not a cursor (garbage, NUL bytes, a megabyte, a negative
 * position, a directory) is refused with one line naming the file, never a crash; a missing file is the start; writes
 * replace it whole and leave no temporary file behind.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Option } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Cursor from "../../../audit/export/Cursor.ts"

const tempDir = () => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-cursor-"))
  return Effect.as(Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))), dir)
}

const hash = "ab".repeat(32)

describe("Cursor", () => {
  it("parses what it renders", () => {
    const cursor = { position: 1234, hash }
    assert.deepStrictEqual(Cursor.parse(Cursor.render(cursor)), Either.right(cursor))
    assert.deepStrictEqual(Cursor.parse(`{"position":0,"hash":"${"0".repeat(64)}"}`), Either.right({ position: 0, hash: "0".repeat(64) }))
  })

  it("refuses text that is not a cursor, saying why", () => {
    const cases: ReadonlyArray<[string, RegExp]> = [
      ["", /empty/],
      ["garbage\n", /not JSON/],
      [`{"position":1,\u0000"hash":"${hash}"}`, /NUL/],
      [`{"position":-1,"hash":"${hash}"}`, /whole number ≥ 0/],
      [`{"position":1.5,"hash":"${hash}"}`, /whole number/],
      [`{"position":"12","hash":"${hash}"}`, /not a cursor/],
      [`{"position":1e300,"hash":"${hash}"}`, /not a cursor/],
      [`{"position":12,"hash":"${hash.toUpperCase()}"}`, /64 lowercase hex/],
      [`{"position":12}`, /not a cursor/],
      [`[1,2]`, /not a cursor/],
      [`null`, /not a cursor/]
    ]
    for (const [text, why] of cases) {
      const parsed = Cursor.parse(text)
      assert.isTrue(Either.isLeft(parsed), JSON.stringify(text))
      assert.match(Either.getLeft(parsed).pipe(Option.getOrThrow), why)
    }
  })

  it.scoped("reads a missing file as the start, and refuses hostile files with a CursorError naming the file", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const path = Path.join(dir, "cursor")
      assert.isTrue(Option.isNone(yield* Cursor.read(path)))
      const refused = (content: string | Buffer | "dir") =>
        Effect.gen(function*() {
          Fs.rmSync(path, { recursive: true, force: true })
          if (content === "dir") Fs.mkdirSync(path)
          else Fs.writeFileSync(path, content)
          const error = yield* Effect.flip(Cursor.read(path))
          assert.strictEqual(error._tag, "CursorError")
          assert.strictEqual(error.reason, "Invalid")
          assert.include(error.message, path)
          assert.notInclude(error.message, "\u0000")
          assert.isBelow(error.message.length, 400)
          return error.message
        })
      assert.match(yield* refused("garbage"), /not JSON/)
      assert.match(yield* refused(Buffer.alloc(64)), /NUL/)
      assert.match(yield* refused("x".repeat(1024 * 1024)), /over 4096 bytes/)
      assert.match(yield* refused(`{"position":-5,"hash":"${hash}"}`), /≥ 0/)
      assert.match(yield* refused("dir"), /not a regular file/)
    }))

  it.scoped("a cursor in a directory that cannot hold one is refused before anything is exported", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const error = yield* Effect.flip(Cursor.read(Path.join(dir, "missing", "cursor")))
      assert.strictEqual(error.reason, "Write")
    }))

  it.scoped("writes replace the file whole, mode 0600, and leave no temporary file", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const path = Path.join(dir, "cursor")
      // A temporary file left by a killed exporter does not get in the way.
      Fs.writeFileSync(`${path}.tmp`, "half a cursor")
      yield* Cursor.write(path, { position: 7, hash })
      assert.deepStrictEqual(yield* Cursor.read(path), Option.some({ position: 7, hash }))
      yield* Cursor.write(path, { position: 9007199254740991, hash })
      assert.deepStrictEqual(yield* Cursor.read(path), Option.some({ position: 9007199254740991, hash }))
      assert.deepStrictEqual(Fs.readdirSync(dir), ["cursor"])
      assert.strictEqual(Fs.statSync(path).mode & 0o777, 0o600)
    }))
})
