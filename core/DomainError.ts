/**
 * The refusals deciders answer with: one tagged error whose `reason` says what the caller acts on (404, 409, 401, ...).
 */
import { Schema } from "effect"

/** A command refused by the business rules; nothing was appended. */
export class DomainError extends Schema.TaggedError<DomainError>()("DomainError", {
  reason: Schema.Literal("NotFound", "AlreadyExists", "Conflict", "Revoked", "Invalid"),
  message: Schema.String
}) {}
