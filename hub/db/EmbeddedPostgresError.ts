/** The one error of the embedded Postgres modules: why the cluster could not be prepared or started. */
import * as Schema from "effect/Schema"

/** Why the embedded cluster could not be prepared or started; `message` says what to do about it. */
export class EmbeddedPostgresError extends Schema.TaggedError<EmbeddedPostgresError>()("EmbeddedPostgresError", {
  reason: Schema.Literal("DataDir", "Init", "Start"),
  message: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {}

/** An {@link EmbeddedPostgresError}, with `cause` only when there is one. */
export const fail = (reason: EmbeddedPostgresError["reason"], message: string, cause?: unknown) =>
  new EmbeddedPostgresError(cause === undefined ? { reason, message } : { reason, message, cause })
