/**
 * The events of the record about itself: checkpoints signed over the chain, the signing key's rotation, and every
 * reading of the log through the API or an export (one event per query or export run, never per row).
 */
import { Schema } from "effect"
import { ApiKeyId } from "../Ids.ts"
import { Count, optional, Sha256Hex, Timestamp } from "./Fields.ts"

/** An Ed25519 key id as in C2SP signed notes: the first 4 bytes of SHA-256(name, 0x0A, 0x01, public key), as hex. */
export const SigningKeyId = Schema.String.pipe(
  Schema.pattern(/^[0-9a-f]{8}$/, { message: () => "expected a signed-note key id: 8 lowercase hex characters" })
).annotations({ identifier: "SigningKeyId" })

/**
 * The hub signed `(origin, position, headHash)` as a signed note; the note itself is written beside the data dir and
 * handed to the operator's checkpoint command. The event comes after the position it signs.
 */
export class CheckpointSigned extends Schema.TaggedClass<CheckpointSigned>()("CheckpointSigned", {
  origin: Schema.NonEmptyTrimmedString,
  position: Schema.Int.pipe(Schema.positive()),
  headHash: Sha256Hex,
  keyId: SigningKeyId
}) {}

/** The hub's checkpoint signing key was replaced; the old public key still verifies the notes it signed. */
export class SigningKeyRotated extends Schema.TaggedClass<SigningKeyRotated>()("SigningKeyRotated", {
  origin: Schema.NonEmptyTrimmedString,
  /** Absent for the first key a hub makes. */
  previousKeyId: optional(SigningKeyId),
  keyId: SigningKeyId,
  /** The new Ed25519 public key, base64 (32 bytes). */
  publicKey: Schema.String.pipe(Schema.pattern(/^[A-Za-z0-9+/]{43}=$/))
}) {}

/** What kind of reading of the log an `AuditRead` stands for. */
export const AuditReadKind = Schema.Literal("query", "stats", "access", "export", "tail", "verify")

/**
 * Somebody read the log: one API query, stats or access answer, one live tail opened (its filters; not each event it
 * then shows), one export run, or one `connect audit verify` run. `filters` are the query's own parameters as given
 * (never a secret); `count` the events it returned, exported or verified. An offline run (verify, export) repeated
 * with the same outcome within its window is coalesced (audit/PgReadWindows.ts): `runs` such reads, the first at
 * `firstAt` and the last at `lastAt`, the other fields the last one's; without `runs` the event stands for one read.
 */
export class AuditRead extends Schema.TaggedClass<AuditRead>()("AuditRead", {
  kind: AuditReadKind,
  apiKeyId: optional(ApiKeyId),
  filters: Schema.Record({ key: Schema.String, value: Schema.String }),
  count: Count,
  /** Export and verify runs: the first and last position sent or checked. */
  fromPosition: optional(Count),
  toPosition: optional(Count),
  /** Verify runs: whether the chain held over the range, and where it first broke and how many breaks it found. */
  verified: optional(Schema.Literal("intact", "broken")),
  firstBreak: optional(Count),
  breaks: optional(Count),
  /** Coalesced reads: how many this event stands for (absent: one), and when the first and the last of them ran. */
  runs: optional(Schema.Int.pipe(Schema.positive())),
  firstAt: optional(Timestamp),
  lastAt: optional(Timestamp)
}) {}
