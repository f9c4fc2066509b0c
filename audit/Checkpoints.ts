/**
 * Signed checkpoints on the auditor's side: which keys to trust (given by the auditor, else the hub's key file), and
 * `verify --checkpoint`: the note's signature, then proof that the log still holds the prefix it signed, unchanged:
 * the stored hash at the note's position is the note's head hash and the chain from 1 to that position holds. A
 * rewritten chain (every hash recomputed after an edit) or a cut tail fails it.
 */
import * as Fs from "node:fs"
import { Effect, Either, Option, Schema } from "effect"
import * as CheckpointNote from "../core/CheckpointNote.ts"
import { EventLog, type EventLogError } from "../core/EventLog.ts"
import * as SignedNote from "../core/SignedNote.ts"
import * as SigningKeys from "../core/SigningKeys.ts"
import type { VerifyResult } from "./Verify.ts"

/** A checkpoint or key file could not be read, or no key is known to verify with. */
export class CheckpointFileError extends Schema.TaggedError<CheckpointFileError>()("CheckpointFileError", {
  path: Schema.String,
  message: Schema.String
}) {}

/** What one checkpoint came to. */
export interface CheckpointOutcome {
  readonly file: string
  readonly ok: boolean
  readonly message: string
  readonly origin?: string
  readonly position?: number
  readonly headHash?: string
  /** The keys whose signatures verified, `name+keyid`. */
  readonly signedBy?: ReadonlyArray<string>
}

/** Reads at most one byte over the note limit, so that a huge file is refused as too large without being read whole. */
export const readNote = (path: string): Effect.Effect<Uint8Array, CheckpointFileError> =>
  Effect.try({
    try: () => {
      const fd = Fs.openSync(path, "r")
      try {
        const buffer = Buffer.alloc(SignedNote.MAX_NOTE_BYTES + 1)
        let size = 0
        for (let n = 1; n > 0 && size < buffer.length; size += n) n = Fs.readSync(fd, buffer, size, buffer.length - size, null)
        return buffer.subarray(0, size)
      } finally {
        Fs.closeSync(fd)
      }
    },
    catch: (cause) =>
      new CheckpointFileError({ path, message: `cannot read ${path}: ${(cause as NodeJS.ErrnoException).code ?? String(cause)}` })
  })

/** The verifier keys in a key file: one `name+keyid+key` per line; blank lines and `#` comments skipped. */
export const parseKeyFile = (text: string, path: string): Either.Either<ReadonlyArray<SignedNote.NoteVerifier>, CheckpointFileError> => {
  const lines = text.split("\n").map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#"))
  const keys: Array<SignedNote.NoteVerifier> = []
  for (const line of lines) {
    const key = SignedNote.parseVerifierKey(line)
    if (Either.isLeft(key)) return Either.left(new CheckpointFileError({ path, message: `${path}: ${key.left.message}` }))
    keys.push(key.right)
  }
  return keys.length === 0 ? Either.left(new CheckpointFileError({ path, message: `${path} holds no verifier key` })) : Either.right(keys)
}

/** Every key of the hub's ring, current and retired: what the operator's own keys verify. */
export const storeVerifiers = Effect.gen(function*() {
  const store = yield* SigningKeys.SigningKeyStore
  const ring = yield* store.read
  if (Option.isNone(ring)) {
    return yield* new CheckpointFileError({
      path: store.path,
      message: `no signing key at ${store.path} to verify with: give the hub's public key with --key or --key-file`
    })
  }
  return ring.value.keys.map(SigningKeys.verifierOf)
})

const short = (hash: string) => `${hash.slice(0, 16)}…`

/**
 * Checks one note against the log: its signature by a known key, its body, the stored hash at its position, and the
 * chain up to it (`chainUpTo`, which the caller may answer from a verification it already ran).
 */
export const check = Effect.fn("Audit.checkCheckpoint")(function*(
  file: string,
  note: Uint8Array,
  verifiers: ReadonlyArray<SignedNote.NoteVerifier>,
  chainUpTo: (position: number) => Effect.Effect<VerifyResult, EventLogError, EventLog>
) {
  const failed = (message: string, more: Partial<CheckpointOutcome> = {}): CheckpointOutcome => ({ file, ok: false, message, ...more })
  const opened = SignedNote.open(note, verifiers)
  if (Either.isLeft(opened)) return failed(`the note does not verify: ${opened.left.message}`)
  const body = CheckpointNote.parse(opened.right.text)
  if (Either.isLeft(body)) return failed(body.left.message)
  const { origin, position, headHash } = body.right
  const about = { origin, position, headHash, signedBy: opened.right.verified.map((k) => `${k.name}+${k.keyId}`) }
  const log = yield* EventLog
  const [stored] = yield* log.readLinks(position - 1, 1)
  if (stored === undefined || stored.position !== position) {
    const head = yield* log.head
    return failed(`position ${position} is no longer in the log (it ends at ${head.position}): the log was cut`, about)
  }
  if (stored.hash !== headHash) {
    return failed(
      `the log's hash at position ${position} is ${short(stored.hash)}, the note's ${short(headHash)}: the log was rewritten`,
      about
    )
  }
  const chain = yield* chainUpTo(position)
  if (!chain.ok) return failed(`the chain up to position ${position} does not hold: ${chain.message}`, about)
  return { file, ok: true, message: `the log holds position ${position} unchanged (head ${short(headHash)})`, ...about }
})
