/**
 * Revocations of public links told to the proxy of the same hub at once: the proxy keeps links it looked up for a few
 * seconds (LinkProxy.ts), and a link revoked through this hub's API must answer 410 from the next request on, not
 * when that copy expires. One per hub (provided by hub/Main.ts); where none is provided, the API and the proxy each
 * make do without (the proxy's copies then live their few seconds).
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
