/**
 * Error answers: one tagged error per code, sent as {"error":{"code":<its tag>,"message"}} with the status its code
 * has here.
 * Part of the hub API declared in core/HubApi.ts.
 */
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import { ParseResult, Schema } from "effect"

/** 400: the request is malformed (its body is not a JSON object, a field breaks its rule). */
export class BadRequest extends Schema.TaggedError<BadRequest>()("BadRequest", { message: Schema.String }) {}

/** 400: the business rules refuse the command as invalid. */
export class Invalid extends Schema.TaggedError<Invalid>()("Invalid", { message: Schema.String }) {}

/** 401: no credential, or one that is unknown, expired or revoked. */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", { message: Schema.String }) {}

/** 401: the agent the command is about has been revoked. */
export class Revoked extends Schema.TaggedError<Revoked>()("Revoked", { message: Schema.String }) {}

/** 403: a credential of the wrong kind (an agent token where an API key is needed, or the reverse). */
export class Forbidden extends Schema.TaggedError<Forbidden>()("Forbidden", { message: Schema.String }) {}

/** 404: what the command names does not exist. */
export class NotFound extends Schema.TaggedError<NotFound>()("NotFound", { message: Schema.String }) {}

/** 409: what the command creates exists already. */
export class AlreadyExists extends Schema.TaggedError<AlreadyExists>()("AlreadyExists", { message: Schema.String }) {}

/** 409: the command conflicts with the current state. */
export class Conflict extends Schema.TaggedError<Conflict>()("Conflict", { message: Schema.String }) {}

/** 413: the request body is larger than the hub takes (64 KiB by default); the hub closes the connection. */
export class BodyTooLarge extends Schema.TaggedError<BodyTooLarge>()("BodyTooLarge", { message: Schema.String }) {}

/** 429: too many refused credentials from the caller's address; refused without a look-up until its window ends. */
export class TooManyRequests extends Schema.TaggedError<TooManyRequests>()("TooManyRequests", {
  message: Schema.String
}) {}

/** 503: the hub cannot reach its event log, and fails closed; try again. */
export class Unavailable extends Schema.TaggedError<Unavailable>()("Unavailable", { message: Schema.String }) {}

const statuses: Record<string, number> = {}

/** `error` as the API sends it: `status`, with the body `{"error":{"code":<its tag>,"message"}}`. */
const answer = <Tag extends string, A extends { readonly _tag: Tag; readonly message: string }>(
  error: Schema.Schema<A, { readonly _tag: Tag; readonly message: string }> & { readonly _tag: Tag },
  status: number
) => {
  statuses[error._tag] = status
  return Schema.transform(
    Schema.Struct({ error: Schema.Struct({ code: Schema.Literal(error._tag), message: Schema.String }) }),
    error,
    {
      strict: true,
      decode: ({ error }) => ({ _tag: error.code, message: error.message }),
      encode: ({ _tag, message }) => ({ error: { code: _tag, message } })
    }
  ).annotations(HttpApiSchema.annotations({ status }))
}

/** Every error answer of the API, by code. */
export const Errors = {
  BadRequest: answer(BadRequest, 400),
  Invalid: answer(Invalid, 400),
  Unauthorized: answer(Unauthorized, 401),
  Revoked: answer(Revoked, 401),
  Forbidden: answer(Forbidden, 403),
  NotFound: answer(NotFound, 404),
  AlreadyExists: answer(AlreadyExists, 409),
  Conflict: answer(Conflict, 409),
  BodyTooLarge: answer(BodyTooLarge, 413),
  TooManyRequests: answer(TooManyRequests, 429),
  Unavailable: answer(Unavailable, 503)
}

/** The status an error answer is sent with, by its code (undefined for a code this API does not declare). */
export const statusOf = (code: string): number | undefined => statuses[code]

/**
 * What is wrong with a body that breaks its schema, in one line: the message of each issue (the rules below carry
 * messages that name their field).
 */
export const describeIssues = (error: ParseResult.ParseError): string =>
  ParseResult.ArrayFormatter.formatErrorSync(error).map((issue) => issue.message).join("; ")
