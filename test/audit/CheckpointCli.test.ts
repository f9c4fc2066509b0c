/**
 * What `connect audit pubkey` prints is what `verify --key-file` reads: every key, current first, with `#` lines an
 * auditor can keep; a line that is not a key is refused with the file's name.
 */
import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import { formatKeys } from "../../audit/CheckpointCli.ts"
import { parseKeyFile } from "../../audit/Checkpoints.ts"
import * as SigningKeys from "../../core/SigningKeys.ts"

describe("pubkey and --key-file", () => {
  it("round-trip the current and retired keys, current first", () => {
    const { ring, key } = SigningKeys.rotate(SigningKeys.createRing("a.example/connect", new Date()), "a.example/connect", new Date())
    const printed = formatKeys(ring)
    expect(printed.split("\n")[0]).toMatch(new RegExp(`^# current key ${key.keyId}, made `))
    expect(printed).toMatch(/^# retired .*; still verifies the notes it signed$/m)
    const keys = Either.getOrThrow(parseKeyFile(`${printed}\n\n`, "keys.txt"))
    expect(keys.map((k) => k.keyId)).toEqual([key.keyId, ring.keys[0]!.keyId])
    expect(printed).not.toContain(JSON.parse(SigningKeys.encodeFile(ring)).keys[0].seed)
  })

  it("refuses a line that is not a key, and a file with none", () => {
    const bad = parseKeyFile("# keys\nnot-a-key\n", "keys.txt")
    expect(Either.isLeft(bad) && bad.left.message).toMatch(/^keys\.txt: not a verifier key/)
    const none = parseKeyFile("# nothing\n", "keys.txt")
    expect(Either.isLeft(none) && none.left.message).toBe("keys.txt holds no verifier key")
  })
})
