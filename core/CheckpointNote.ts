/**
 * The body of a signed checkpoint of the event log: three lines, the origin, the position (decimal) and the stored
 * hash at that position (lowercase hex). The chain is linear, so there is no Merkle root and this is not a
 * tlog-checkpoint; the note format around it is c2sp.org/signed-note (SignedNote.ts).
 */
import { Either } from "effect"
import { NoteError, isKeyName } from "./SignedNote.ts"

/** What a checkpoint states: the log of `origin` held `headHash` at `position`. */
export interface Checkpoint {
  readonly origin: string
  readonly position: number
  readonly headHash: string
}

/** The note text of a checkpoint. */
export const format = (checkpoint: Checkpoint): string =>
  `${checkpoint.origin}\n${checkpoint.position}\n${checkpoint.headHash}\n`

/** Whether `origin` can be a checkpoint's first line (and a key name): non-empty, no space, no `+`, no control. */
export const isOrigin = (origin: string): boolean => isKeyName(origin) && origin.length <= 255

/** Reads a checkpoint from a note's (verified) text. */
export const parse = (text: string): Either.Either<Checkpoint, NoteError> => {
  const lines = text.split("\n")
  const bad = (why: string) =>
    Either.left(new NoteError({ reason: "Malformed", message: `not a connect checkpoint (${why})` }))
  if (lines.length !== 4 || lines[3] !== "") return bad("expected 3 lines: origin, position, head hash")
  const [origin, position, hash] = lines as [string, string, string]
  if (!isOrigin(origin)) return bad("the origin is not a key name")
  if (!/^[1-9][0-9]{0,15}$/.test(position) || !Number.isSafeInteger(Number(position))) return bad("the position is not a positive decimal")
  if (!/^[0-9a-f]{64}$/.test(hash)) return bad("the head hash is not 64 lowercase hex characters")
  return Either.right({ origin, position: Number(position), headHash: hash })
}
