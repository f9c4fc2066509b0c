/**
 * Revocations of public links told to the proxy at once: the proxy keeps links it looked up for a few seconds
 * (LinkProxy.ts), and a revoked link must answer 410 from the next request on, not when that copy expires. A link
 * revoked through this hub's API is told synchronously (`LinkNotices`, one per hub, provided by hub/Main.ts); one
 * revoked through another hub sharing the database reaches the proxy from the log (hub/relay/PgRevocations.ts).
 */
import { Context, Effect, Layer } from "effect"

/** Where revocations are told. */
export class LinkNotices extends Context.Tag("connect/hub/LinkNotices")<LinkNotices, {
  /** Link `linkId` was revoked (its `LinkRevoked` is on the log). */
  readonly revoked: (linkId: string) => void
  /** Calls `listener` with every link revoked from now on, until the scope closes. */
  readonly listen: (listener: (linkId: string) => void) => Effect.Effect<void, never, import("effect/Scope").Scope>
}>() {}

/** A fresh set of listeners. */
export const make = (): LinkNotices["Type"] => {
  const listeners = new Set<(linkId: string) => void>()
  return {
    revoked: (linkId) => {
      for (const listener of listeners) listener(linkId)
    },
    listen: (listener) =>
      Effect.acquireRelease(Effect.sync(() => void listeners.add(listener)), () => Effect.sync(() => void listeners.delete(listener)))
  }
}

/** The hub's notices. */
export const layer: Layer.Layer<LinkNotices> = Layer.sync(LinkNotices, make)
