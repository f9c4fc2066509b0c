/**
 * Signed notes as c2sp.org/signed-note defines them: the Go reference implementation's published vector signs and
 * opens byte for byte; hostile notes (too long, NUL, CR, bad UTF-8, duplicate signatures) are refused with the reason;
 * an unknown key or an altered text does not open; checkpoint bodies round-trip.
 */
import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import * as CheckpointNote from "../../core/CheckpointNote.ts"
import * as SignedNote from "../../core/SignedNote.ts"
import * as SigningKeys from "../../core/SigningKeys.ts"

// golang.org/x/mod/sumdb/note's documented example: key, text and the note it signs to.
const PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
const PETER_SEED = Buffer.from("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz", "base64").subarray(1)
const TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
const NOTE = `${TEXT}\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n`

const peter = Either.getOrThrow(SignedNote.parseVerifierKey(PETER_VKEY))
const reason = <A>(e: Either.Either<A, SignedNote.NoteError>) => Either.isLeft(e) ? e.left.reason : "ok"

describe("SignedNote", () => {
  it("signs the Go reference vector byte for byte and opens it", () => {
    expect(peter).toMatchObject({ name: "PeterNeumann", keyId: "c74f20a3" })
    expect(SignedNote.formatVerifierKey(peter)).toBe(PETER_VKEY)
    const signer = SignedNote.makeSigner("PeterNeumann", PETER_SEED, peter.publicKey)
    expect(signer.keyId).toBe("c74f20a3")
    expect(Either.getOrThrow(SignedNote.sign(TEXT, [signer]))).toBe(NOTE)
    const opened = Either.getOrThrow(SignedNote.open(NOTE, [peter]))
    expect(opened.text).toBe(TEXT)
    expect(opened.verified.map((k) => k.keyId)).toEqual(["c74f20a3"])
  })

  it("reads a verifier key whose base64 holds a '+', and refuses mangled ones", () => {
    expect(Either.getOrThrow(SignedNote.parseVerifierKey("TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6")).name).toBe("TEST")
    for (const bad of [
      "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", // id does not match
      "PeterNeumann+c74f20a3+Apc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", // not 33 bytes
      "PeterNeumann+c74f20a3+AhpcQcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWA", // wrong type
      "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
      "PeterNeumann+c74f20a3",
      ""
    ]) expect(reason(SignedNote.parseVerifierKey(bad)), bad).toBe("BadKey")
  })

  it("refuses a note signed by no key it knows, or whose text was altered", () => {
    const other = SigningKeys.generate("example.com/other", new Date())
    expect(reason(SignedNote.open(NOTE, [SigningKeys.verifierOf(other)]))).toBe("UnknownKey")
    expect(reason(SignedNote.open(NOTE.replace("problem is", "problem was"), [peter]))).toBe("BadSignature")
    expect(reason(SignedNote.open(NOTE.replace("Sffcv", "Sffcw"), [peter]))).toBe("BadSignature")
    // A changed key id is another key's signature: ignored, and with no other, the note is signed by no known key.
    expect(reason(SignedNote.open(NOTE.replace("x08go", "x08gp"), [peter]))).toBe("UnknownKey")
  })

  it("ignores signatures by unknown keys beside a known one, and refuses a known key's bad signature", () => {
    const mine = SigningKeys.generate("example.com/mine", new Date())
    const theirs = SigningKeys.generate("example.com/theirs", new Date())
    const note = Either.getOrThrow(SignedNote.sign("hello\n", [SigningKeys.signerOf(mine), SigningKeys.signerOf(theirs)]))
    const opened = Either.getOrThrow(SignedNote.open(note, [SigningKeys.verifierOf(mine)]))
    expect(opened.verified.map((k) => k.name)).toEqual(["example.com/mine"])
    expect(opened.unverified.map((s) => s.name)).toEqual(["example.com/theirs"])
  })

  it("refuses hostile notes with the reason", () => {
    const sigLine = NOTE.slice(TEXT.length + 1)
    const cases: ReadonlyArray<[string, string | Uint8Array, string]> = [
      ["too large", "a".repeat(SignedNote.MAX_NOTE_BYTES) + NOTE, "TooLarge"],
      ["NUL", NOTE.replace("If you", "If\u0000you"), "Malformed"],
      ["CR LF", NOTE.replaceAll("\n", "\r\n"), "Malformed"],
      ["not UTF-8", Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(NOTE)]), "Malformed"],
      ["duplicate signature", NOTE + sigLine, "Malformed"],
      ["no blank line", TEXT + sigLine, "Malformed"],
      ["no final newline", NOTE.slice(0, -1), "Malformed"],
      ["hyphen, not em dash", NOTE.replace("\u2014", "-"), "Malformed"],
      ["lenient base64", NOTE.replace("x08go/", "x08go*/"), "Malformed"],
      ["no signature", `${TEXT}\n`, "Malformed"],
      ["too many signatures", `${TEXT}\n${Array.from({ length: 101 }, (_, i) => `\u2014 k${i} AAAAAAA=\n`).join("")}`, "TooLarge"]
    ]
    for (const [what, note, want] of cases) expect(reason(SignedNote.open(note, [peter])), what).toBe(want)
  })

  it("will not sign a text without a final newline, with a blank line, or with control characters", () => {
    const signer = SigningKeys.signerOf(SigningKeys.generate("n", new Date()))
    for (const text of ["no newline", "a\n\nb\n", "tab\there\n", ""]) expect(reason(SignedNote.sign(text, [signer])), text).toBe("Malformed")
  })
})

describe("CheckpointNote", () => {
  const checkpoint = { origin: "hub.example.com/connect", position: 42, headHash: "ab".repeat(32) }

  it("is origin, position and head hash, one per line, and reads back", () => {
    expect(CheckpointNote.format(checkpoint)).toBe(`hub.example.com/connect\n42\n${"ab".repeat(32)}\n`)
    expect(Either.getOrThrow(CheckpointNote.parse(CheckpointNote.format(checkpoint)))).toEqual(checkpoint)
  })

  it("refuses other bodies", () => {
    for (const text of ["hub\n42\n", `hub\n042\n${"ab".repeat(32)}\n`, `hub\n0\n${"ab".repeat(32)}\n`, `hub\n1\n${"AB".repeat(32)}\n`, `a b\n1\n${"ab".repeat(32)}\n`, `hub\n1\n${"ab".repeat(32)}\nmore\n`]) {
      expect(Either.isLeft(CheckpointNote.parse(text)), JSON.stringify(text)).toBe(true)
    }
  })

  it("signed with a key ring's current key, opens with the ring's verifiers, old keys included", () => {
    const first = SigningKeys.createRing("hub.example.com/connect", new Date())
    const note = Either.getOrThrow(SignedNote.sign(CheckpointNote.format(checkpoint), [SigningKeys.signerOf(first.keys[0]!)]))
    const { ring, previous } = SigningKeys.rotate(first, "hub.example.com/connect", new Date())
    expect(previous._tag === "Some" && previous.value.keyId).toBe(first.keys[0]!.keyId)
    expect(ring.keys[0]!.retiredAt).toBeInstanceOf(Date)
    const decoded = Either.getOrThrow(SigningKeys.decodeFile(SigningKeys.encodeFile(ring), "keys.json"))
    expect(Either.getOrThrow(SignedNote.open(note, decoded.keys.map(SigningKeys.verifierOf))).text).toBe(CheckpointNote.format(checkpoint))
    expect(SigningKeys.encodeFile(ring)).not.toContain("Redacted")
    expect(String(ring.keys[0]!.seed)).not.toContain(JSON.parse(SigningKeys.encodeFile(ring)).keys[0].seed)
  })
})
