/**
 * The message of a failure whose type is not known (a caught exception, a `cause`): what a user is shown in the one
 * line that names it.
 */

/** The `message` of `error` when it has one (an `Error`, or an object that carries one), else `error` as text. */
export const messageOf = (error: unknown): string =>
  typeof error === "object" && error !== null && "message" in error ? String(error.message) : String(error)

/**
 * One line naming what went wrong under a pg / node error, which is often an AggregateError with no message: the
 * messages of its inner and nested causes, joined.
 */
export const describeCause = (cause: unknown): string => {
  const seen = new Set<unknown>()
  const walk = (u: unknown): string | undefined => {
    if (u === null || u === undefined || seen.has(u)) return undefined
    seen.add(u)
    if (u instanceof AggregateError) {
      const inner = u.errors.map(walk).filter((s): s is string => !!s)
      if (inner.length > 0) return [...new Set(inner)].join("; ")
    }
    if (u instanceof Error) {
      const message = u.message.trim()
      const nested = "cause" in u ? walk(u.cause) : undefined
      if (message && nested && !message.includes(nested)) return `${message}: ${nested}`
      if (message) return message
      if (nested) return nested
      const code = (u as { code?: unknown }).code
      return typeof code === "string" ? code : u.name
    }
    return typeof u === "string" ? u : undefined
  }
  return (walk(cause) ?? "unknown error").replace(/\s+/g, " ")
}
