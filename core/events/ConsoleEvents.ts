/**
 * The events of the web console (`connect hub` serves it at `/ui`): a sign-in with an API key, exchanged for a session
 * cookie; its end (signed out, or expired when next presented); and refused sign-ins, appended one by one while the
 * address is within its limit and coalesced per address and window past it (the same limiter shape as
 * `ApiKeyAuthFailed`). A session is named by the SHA-256 of its cookie's first 16 hex characters — never the cookie.
 */
import { Schema } from "effect"
import { ApiKeyId } from "../Ids.ts"
import { Count, Ip, optional, SecretPrefix, Timestamp } from "./Fields.ts"

/** The first 16 hex characters of the SHA-256 of a session cookie: enough to correlate sign-in and sign-out. */
export const ConsoleSessionRef = Schema.String.pipe(
  Schema.pattern(/^[0-9a-f]{16}$/, { message: () => "expected a session reference: 16 lowercase hex characters" })
).annotations({ identifier: "ConsoleSessionRef" })

/** An API key was exchanged for a console session, valid until `expiresAt`. */
export class ConsoleSignedIn extends Schema.TaggedClass<ConsoleSignedIn>()("ConsoleSignedIn", {
  apiKeyId: ApiKeyId,
  session: ConsoleSessionRef,
  scope: Schema.Literal("workspace", "operator"),
  expiresAt: Timestamp
}) {}

/** Why a console session ended. */
export const ConsoleSignOutReason = Schema.Literal("signed_out", "expired", "key_revoked")

/** A console session ended: its holder signed out, or it was presented after it expired or after its key was revoked. */
export class ConsoleSignedOut extends Schema.TaggedClass<ConsoleSignedOut>()("ConsoleSignedOut", {
  apiKeyId: ApiKeyId,
  session: ConsoleSessionRef,
  reason: ConsoleSignOutReason,
  /** How long the session lasted, in milliseconds. */
  durationMs: Count
}) {}

/** Why a console sign-in was refused. */
export const ConsoleSignInFailureReason = Schema.Literal("unknown_api_key", "revoked_api_key", "rate_limited")

/** A console sign-in was refused (one attempt, or `count` of them from one address in one window). */
export class ConsoleSignInFailed extends Schema.TaggedClass<ConsoleSignInFailed>()("ConsoleSignInFailed", {
  apiKeyId: optional(ApiKeyId),
  keyPrefix: optional(SecretPrefix),
  reason: ConsoleSignInFailureReason,
  ip: Ip,
  /** Refusals this event stands for (absent: 1). */
  count: optional(Schema.Int.pipe(Schema.positive())),
  /** First and last refusal of a coalesced window. */
  firstAt: optional(Timestamp),
  lastAt: optional(Timestamp)
}) {}
