/**
 * Golden files: the record of one sample per event type (and of a type this build does not know) in every format,
 * compared byte for byte with test/audit/export/golden/<format>/<type>.txt. `UPDATE_GOLDEN=1` rewrites them; read the
 * diff before committing it.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { eventTypes } from "../../../core/Events.ts"
import { Formats, record } from "../../../audit/export/Format.ts"
import { sampleOf, stored, UnknownType } from "./Samples.ts"

const context = { productVersion: "0.1.0", hostname: "exporter.example" }
const root = Path.join(import.meta.dirname, "golden")
const update = process.env.UPDATE_GOLDEN === "1"
const types = [...eventTypes, UnknownType]

describe("golden files", () => {
  it("cover every event type of the catalog, once", () => {
    assert.deepStrictEqual(stored.map((e) => e.type).sort(), [...types].sort())
  })

  for (const format of Formats) {
    describe(format, () => {
      for (const type of types) {
        it(type === UnknownType ? `${type} (a type this build does not know)` : type, () => {
          const actual = Buffer.from(record(format, sampleOf(type), context) + "\n", "utf8")
          const file = Path.join(root, format, `${type}.txt`)
          if (update) {
            Fs.mkdirSync(Path.dirname(file), { recursive: true })
            Fs.writeFileSync(file, actual)
          }
          assert.isTrue(Fs.existsSync(file), `${file} is missing: run with UPDATE_GOLDEN=1 and check it by eye`)
          const expected = Fs.readFileSync(file)
          assert.strictEqual(actual.toString("utf8"), expected.toString("utf8"))
          assert.isTrue(actual.equals(expected))
        })
      }

      it("has no golden file for a type that is gone", () => {
        const files = Fs.readdirSync(Path.join(root, format)).sort()
        assert.deepStrictEqual(files, types.map((t) => `${t}.txt`).sort())
      })
    })
  }
})
