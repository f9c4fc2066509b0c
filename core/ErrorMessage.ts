/**
 * The message of a failure whose type is not known (a caught exception, a `cause`): what a user is shown in the one
 * line that names it.
 */

/** The `message` of `error` when it has one (an `Error`, or an object that carries one), else `error` as text. */
export const messageOf = (error: unknown): string =>
  typeof error === "object" && error !== null && "message" in error ? String(error.message) : String(error)
