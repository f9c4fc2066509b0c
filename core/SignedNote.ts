/**
 * C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys: a text ending in a newline, a blank line, and one line
 * per signature, `— <key name> base64(key id (4 bytes, big-endian) || signature)`. Signing, opening against a set of
 * known keys, and the verifier key text form `<name>+<hex key id>+base64(0x01 || public key)`. Pure: no I/O beyond
 * Node's Ed25519.
 */
import { createHash, createPrivateKey, createPublicKey, sign as edSign, verify as edVerify } from "node:crypto"
import { Either, Schema } from "effect"

/** A note that cannot be signed, read or trusted; `reason` says which rule it broke. */
export class NoteError extends Schema.TaggedError<NoteError>()("NoteError", {
  reason: Schema.Literal("Malformed", "TooLarge", "UnknownKey", "BadSignature", "BadKey"),
  message: Schema.String
}) {}

/** The signature type byte of Ed25519 in signed notes and key ids. */
export const ED25519 = 0x01

/**
 * Largest note accepted (bytes). Our notes are ~250 bytes with one signature; the spec asks verifiers to take at least
 * 16 signatures of up to ~5 kB each (post-quantum), which 128 KiB leaves room for.
 */
export const MAX_NOTE_BYTES = 128 * 1024

/** Most signature lines accepted in one note (the spec's floor is 16). */
export const MAX_SIGNATURES = 100

const EM_DASH_PREFIX = "\u2014 "

/** A key able to sign notes: its name, key id, and the private half (never printed). */
export interface NoteSigner {
  readonly name: string
  /** The 4-byte key id as 8 lowercase hex characters. */
  readonly keyId: string
  readonly sign: (text: Uint8Array) => Uint8Array
}

/** A key a reader trusts: its name, key id and public key. */
export interface NoteVerifier {
  readonly name: string
  readonly keyId: string
  /** The raw 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array
}

/** One signature line as read. */
export interface NoteSignature {
  readonly name: string
  readonly keyId: string
  /** The signature bytes, without the key id. */
  readonly signature: Uint8Array
}

/** An opened note: its text, the signatures by known keys that verified, and the lines by keys not known. */
export interface OpenedNote {
  readonly text: string
  readonly verified: ReadonlyArray<NoteVerifier>
  readonly unverified: ReadonlyArray<NoteSignature>
}

const fail = (reason: NoteError["reason"], message: string) => Either.left(new NoteError({ reason, message }))

/** Key names are non-empty and hold no Unicode space and no `+`. */
export const isKeyName = (name: string): boolean => name.length > 0 && !/[\s+\u0085\u00a0]/u.test(name) && !hasControl(name)

const hasControl = (text: string) => /[\u0000-\u0009\u000b-\u001f]/.test(text)

/** The key id: the first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key), as 8 hex characters. */
export const keyIdOf = (name: string, publicKey: Uint8Array): string =>
  createHash("sha256").update(name, "utf8").update(new Uint8Array([0x0a, ED25519])).update(publicKey).digest()
    .subarray(0, 4).toString("hex")

const b64url = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64url")

/** Strict standard base64 (RFC 4648 §4, padded): Buffer's own decoder skips what it does not understand. */
const decodeBase64 = (text: string): Uint8Array | undefined => {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return undefined
  const bytes = Buffer.from(text, "base64")
  return bytes.toString("base64") === text ? bytes : undefined
}

/** An Ed25519 signer from a 32-byte private seed and its public key. */
export const makeSigner = (name: string, seed: Uint8Array, publicKey: Uint8Array): NoteSigner => {
  const key = createPrivateKey({ key: { kty: "OKP", crv: "Ed25519", d: b64url(seed), x: b64url(publicKey) }, format: "jwk" })
  return { name, keyId: keyIdOf(name, publicKey), sign: (text) => edSign(null, text, key) }
}

/** A verifier for a named raw 32-byte Ed25519 public key. */
export const makeVerifier = (name: string, publicKey: Uint8Array): NoteVerifier => ({
  name,
  keyId: keyIdOf(name, publicKey),
  publicKey
})

const checkSignature = (verifier: NoteVerifier, text: Uint8Array, signature: Uint8Array): boolean => {
  if (signature.length !== 64) return false
  try {
    const key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: b64url(verifier.publicKey) }, format: "jwk" })
    return edVerify(null, text, key, signature)
  } catch {
    return false
  }
}

/** The verifier key text form: `<name>+<hex key id>+base64(0x01 || public key)`. */
export const formatVerifierKey = (verifier: NoteVerifier): string =>
  `${verifier.name}+${verifier.keyId}+${Buffer.concat([Buffer.from([ED25519]), verifier.publicKey]).toString("base64")}`

/** Reads a verifier key (`<name>+<hex key id>+base64(0x01 || public key)`), checking that the id matches the key. */
export const parseVerifierKey = (vkey: string): Either.Either<NoteVerifier, NoteError> => {
  const text = vkey.trim()
  const parts = text.split("+")
  // The base64 part may itself hold `+`: the name and id are the first two fields.
  const [name, id] = parts
  const encoded = parts.slice(2).join("+")
  const bad = (why: string) => fail("BadKey", `not a verifier key (${why}): ${JSON.stringify(text.slice(0, 80))}`)
  if (parts.length < 3 || name === undefined || id === undefined) return bad("expected name+keyid+base64 key")
  if (!isKeyName(name)) return bad("the key name is empty or holds a space or control character")
  if (!/^[0-9a-f]{8}$/.test(id)) return bad("the key id is not 8 lowercase hex characters")
  const raw = decodeBase64(encoded)
  if (raw === undefined) return bad("the key is not base64")
  if (raw.length !== 33 || raw[0] !== ED25519) return bad("only Ed25519 keys (type 0x01, 32 bytes) are supported")
  const verifier = makeVerifier(name, raw.subarray(1))
  if (verifier.keyId !== id) return bad(`the key id ${id} does not match the key (${verifier.keyId})`)
  return Either.right(verifier)
}

/** Signs `text` (which must end in a newline and hold no blank line at its end) with each signer. */
export const sign = (text: string, signers: ReadonlyArray<NoteSigner>): Either.Either<string, NoteError> => {
  if (!text.endsWith("\n")) return fail("Malformed", "a note's text must end with a newline")
  if (hasControl(text)) return fail("Malformed", "a note's text must not hold control characters other than newline")
  if (text.startsWith("\n") || text.includes("\n\n")) return fail("Malformed", "a note's text must not hold blank lines")
  if (signers.length === 0) return fail("Malformed", "a note needs at least one signer")
  const bytes = Buffer.from(text, "utf8")
  const lines = signers.map((s) => {
    const signature = Buffer.concat([Buffer.from(s.keyId, "hex"), s.sign(bytes)])
    return `${EM_DASH_PREFIX}${s.name} ${signature.toString("base64")}\n`
  })
  return Either.right(`${text}\n${lines.join("")}`)
}

const decodeUtf8 = (bytes: Uint8Array): string | undefined => {
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes)
  } catch {
    return undefined
  }
}

/** Splits a note into its text and signature lines, refusing anything the format does not allow. */
export const parse = (
  note: Uint8Array | string
): Either.Either<{ readonly text: string; readonly signatures: ReadonlyArray<NoteSignature> }, NoteError> => {
  const bytes = typeof note === "string" ? Buffer.from(note, "utf8") : note
  if (bytes.length > MAX_NOTE_BYTES) return fail("TooLarge", `the note is larger than the ${MAX_NOTE_BYTES} bytes accepted`)
  const message = decodeUtf8(bytes)
  if (message === undefined) return fail("Malformed", "the note is not valid UTF-8")
  if (message.includes("\r")) return fail("Malformed", "the note has CR line endings; a note's lines end with LF alone")
  if (hasControl(message)) return fail("Malformed", "the note holds a control character (NUL, tab, ...) other than newline")
  const split = message.lastIndexOf("\n\n")
  if (split < 0) return fail("Malformed", "the note has no blank line before its signatures")
  const text = message.slice(0, split + 1)
  const block = message.slice(split + 2)
  if (!block.endsWith("\n")) return fail("Malformed", "the note's signature block does not end with a newline")
  const lines = block.slice(0, -1).split("\n")
  if (lines.length > MAX_SIGNATURES) return fail("TooLarge", `the note has ${lines.length} signatures, over the ${MAX_SIGNATURES} accepted`)
  const signatures: Array<NoteSignature> = []
  const seen = new Set<string>()
  for (const line of lines) {
    const m = /^\u2014 (\S+) (\S+)$/u.exec(line)
    const raw = m ? decodeBase64(m[2]!) : undefined
    if (!m || !isKeyName(m[1]!) || raw === undefined || raw.length < 5) {
      return fail("Malformed", `not a signature line: ${JSON.stringify(line.slice(0, 80))}`)
    }
    const signature = { name: m[1]!, keyId: Buffer.from(raw.subarray(0, 4)).toString("hex"), signature: raw.subarray(4) }
    const key = `${signature.name}+${signature.keyId}`
    if (seen.has(key)) return fail("Malformed", `the note is signed twice by ${key}`)
    seen.add(key)
    signatures.push(signature)
  }
  return Either.right({ text, signatures })
}

/**
 * Opens a note against the keys a reader trusts. As the spec requires, a signature by an unknown key (name and id not
 * both matching a known one) is ignored, a known key's signature that does not verify rejects the whole note, and a
 * note with no verified signature is rejected.
 */
export const open = (note: Uint8Array | string, known: ReadonlyArray<NoteVerifier>): Either.Either<OpenedNote, NoteError> =>
  Either.flatMap(parse(note), ({ signatures, text }) => {
    const bytes = Buffer.from(text, "utf8")
    const verified: Array<NoteVerifier> = []
    const unverified: Array<NoteSignature> = []
    for (const s of signatures) {
      const key = known.find((k) => k.name === s.name && k.keyId === s.keyId)
      if (key === undefined) {
        unverified.push(s)
      } else if (checkSignature(key, bytes, s.signature)) {
        verified.push(key)
      } else {
        return fail("BadSignature", `the signature by ${s.name}+${s.keyId} does not verify: the note was altered or forged`)
      }
    }
    if (verified.length === 0) {
      const by = unverified.map((s) => `${s.name}+${s.keyId}`).join(", ")
      return fail("UnknownKey", `the note is signed by no key given (signed by ${by})`)
    }
    return Either.right({ text, verified, unverified })
  })
