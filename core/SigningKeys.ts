/**
 * The hub's checkpoint signing keys: the key file's format (a ring of Ed25519 keys, the newest unretired one current,
 * retired ones kept so their public keys still verify old notes), key generation and rotation, and the key store
 * contract. The store that reads and writes the file lives in the hub (hub/checkpoints/KeyFile.ts); audit/ gets it
 * from bin/connect.ts.
 */
import { generateKeyPairSync } from "node:crypto"
import { Context, Effect, Either, Option, ParseResult, Redacted, Schema } from "effect"
import { makeSigner, makeVerifier, type NoteSigner, type NoteVerifier } from "./SignedNote.ts"

const Base64Key = Schema.String.pipe(Schema.pattern(/^[A-Za-z0-9+/]{43}=$/))

/** One key of the ring; `seed` is the Ed25519 private key's 32-byte seed, base64, never printed. */
export class SigningKey extends Schema.Class<SigningKey>("SigningKey")({
  /** The key name (the origin the hub signed as when it made the key). */
  name: Schema.String,
  keyId: Schema.String.pipe(Schema.pattern(/^[0-9a-f]{8}$/)),
  publicKey: Base64Key,
  seed: Schema.Redacted(Base64Key),
  createdAt: Schema.DateFromString,
  /** Set when a newer key replaced it: it signs nothing more but still verifies what it signed. */
  retiredAt: Schema.optional(Schema.DateFromString)
}) {}

/** The key file: every key the hub has had, oldest first. */
export class KeyRing extends Schema.Class<KeyRing>("KeyRing")({
  version: Schema.Literal(1),
  keys: Schema.Array(SigningKey)
}) {}

/** The key file could not be read, written, or holds something else than a key ring. */
export class SigningKeyError extends Schema.TaggedError<SigningKeyError>()("SigningKeyError", {
  reason: Schema.Literal("Read", "Write", "Invalid", "Missing"),
  message: Schema.String
}) {}

/** A fresh Ed25519 key named `name`. */
export const generate = (name: string, now: Date): SigningKey => {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519")
  const jwk = privateKey.export({ format: "jwk" })
  const pub = Buffer.from(publicKey.export({ format: "jwk" }).x!, "base64url")
  return new SigningKey({
    name,
    keyId: makeVerifier(name, pub).keyId,
    publicKey: pub.toString("base64"),
    seed: Redacted.make(Buffer.from(jwk.d!, "base64url").toString("base64")),
    createdAt: now
  })
}

/** The key that signs now: the newest one not retired. */
export const current = (ring: KeyRing): Option.Option<SigningKey> =>
  Option.fromNullable([...ring.keys].reverse().find((k) => k.retiredAt === undefined))

/** A ring of one new key. */
export const createRing = (name: string, now: Date): KeyRing => new KeyRing({ version: 1, keys: [generate(name, now)] })

/** The ring with its current key retired and a new one named `name` added (and current). */
export const rotate = (ring: KeyRing, name: string, now: Date): { readonly ring: KeyRing; readonly key: SigningKey; readonly previous: Option.Option<SigningKey> } => {
  const key = generate(name, now)
  const keys = ring.keys.map((k) => (k.retiredAt === undefined ? new SigningKey({ ...k, retiredAt: now }) : k))
  return { ring: new KeyRing({ version: 1, keys: [...keys, key] }), key, previous: current(ring) }
}

/** The note signer of a key. */
export const signerOf = (key: SigningKey): NoteSigner =>
  makeSigner(key.name, Buffer.from(Redacted.value(key.seed), "base64"), Buffer.from(key.publicKey, "base64"))

/** The note verifier of a key (its public half). */
export const verifierOf = (key: SigningKey): NoteVerifier => makeVerifier(key.name, Buffer.from(key.publicKey, "base64"))

const FileJson = Schema.parseJson(KeyRing)

/** The key file's text (JSON, seeds included: the file is 0600). */
export const encodeFile = (ring: KeyRing): string => `${Schema.encodeSync(FileJson)(ring)}\n`

/** Reads the key file's text, checking each key id against its name and public key. */
export const decodeFile = (text: string, path: string): Either.Either<KeyRing, SigningKeyError> =>
  Schema.decodeEither(FileJson)(text).pipe(
    Either.mapLeft((e) =>
      new SigningKeyError({ reason: "Invalid", message: `${path} is not a signing key file: ${ParseResult.TreeFormatter.formatErrorSync(e).split("\n")[0]}` })
    ),
    Either.flatMap((ring) => {
      const wrong = ring.keys.find((k) => verifierOf(k).keyId !== k.keyId)
      return wrong
        ? Either.left(new SigningKeyError({ reason: "Invalid", message: `${path}: key ${wrong.keyId} does not match its public key` }))
        : Either.right(ring)
    })
  )

/** The signing key store: where the hub's key ring is kept (a file in its data directory). */
export class SigningKeyStore extends Context.Tag("connect/core/SigningKeyStore")<
  SigningKeyStore,
  {
    /** Where the ring is kept, for messages. */
    readonly path: string
    /** The ring, or none when no key was ever made. */
    readonly read: Effect.Effect<Option.Option<KeyRing>, SigningKeyError>
    /** The ring, made with one key named `name` if none exists (once, even with two processes racing). */
    readonly ensure: (name: string) => Effect.Effect<KeyRing, SigningKeyError>
    /** Retires the current key and makes a new one named `name`; fails with `Missing` when there is no ring yet. */
    readonly rotate: (name: string) => Effect.Effect<{ readonly key: SigningKey; readonly previous: Option.Option<SigningKey> }, SigningKeyError>
  }
>() {}

/** The stream of the log that records the signing keys (`SigningKeyRotated`). */
export const KEYS_STREAM = "signing-keys"

/** The stream of the log that records the signed checkpoints (`CheckpointSigned`). */
export const CHECKPOINTS_STREAM = "checkpoints"
