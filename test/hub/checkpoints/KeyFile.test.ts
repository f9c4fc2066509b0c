/**
 * The signing key file: made once (0600) whoever asks first, rotated atomically with the old key kept and retired, a
 * file that is not a key ring refused with its path, never replaced.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import * as SigningKeys from "../../../core/SigningKeys.ts"
import * as KeyFile from "../../../hub/checkpoints/KeyFile.ts"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-keyfile-"))),
  (d) => Effect.sync(() => Fs.rmSync(d, { recursive: true, force: true }))
)

describe("KeyFile", () => {
  it.scoped("makes one key once, 0600, and rotation keeps the old one retired", () =>
    Effect.gen(function*() {
      const dir = Path.join(yield* tempDir, "hub")
      const store = KeyFile.make(dir)
      expect(yield* store.read).toEqual(Option.none())
      expect(yield* Effect.flip(store.rotate("a/connect"))).toMatchObject({ reason: "Missing" })
      const [first, again] = yield* Effect.all([store.ensure("a/connect"), KeyFile.make(dir).ensure("b/connect")], { concurrency: 2 })
      expect(again.keys.map((k) => k.keyId)).toEqual(first.keys.map((k) => k.keyId))
      expect(first.keys[0]!.name).toBe("a/connect")
      expect(Fs.statSync(store.path).mode & 0o777).toBe(0o600)
      const { key, previous } = yield* store.rotate("a/connect")
      expect(Option.map(previous, (k) => k.keyId)).toEqual(Option.some(first.keys[0]!.keyId))
      const ring = Option.getOrThrow(yield* store.read)
      expect(ring.keys.map((k) => [k.keyId, k.retiredAt !== undefined])).toEqual([[first.keys[0]!.keyId, true], [key.keyId, false]])
      expect(Option.getOrThrow(SigningKeys.current(ring)).keyId).toBe(key.keyId)
      expect(Fs.statSync(store.path).mode & 0o777).toBe(0o600)
      expect(Fs.readdirSync(dir)).toEqual([KeyFile.FILE])
    }))

  it.scoped("a file that is not a key ring is refused with its path, and left as it is", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const path = Path.join(dir, KeyFile.FILE)
      for (const text of ["garbage", JSON.stringify({ version: 1, keys: [{ name: "x" }] }), "\u0000"]) {
        Fs.writeFileSync(path, text)
        const error = yield* Effect.flip(KeyFile.make(dir).ensure("a/connect"))
        expect(error).toMatchObject({ _tag: "SigningKeyError", reason: "Invalid" })
        expect(error.message).toContain(path)
        expect(Fs.readFileSync(path, "utf8")).toBe(text)
      }
      // A key whose id does not match its public key (edited by hand) is refused too.
      const ring = SigningKeys.createRing("a/connect", new Date())
      Fs.writeFileSync(path, SigningKeys.encodeFile(ring).replace(ring.keys[0]!.keyId, "00000000"))
      expect((yield* Effect.flip(KeyFile.make(dir).read)).message).toMatch(/key 00000000 does not match its public key/)
    }))
})
