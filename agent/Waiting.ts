/**
 * Local connections accepted on a reach port while the hub is away: each waits for the next hub connection, then is
 * handed to it once the hub says its service can be reached, or is closed after `PENDING_MS`.
 */
import type * as Net from "node:net"
import { Duration, Effect } from "effect"
import type * as HubClient from "./HubClient.ts"
import type { Link } from "./Link.ts"

/**
 * How long a socket accepted by a reach listener waits for the hub connection to come back before it is closed:
 * long enough to ride out a hub restart and the first backoff steps, short enough that a client is not left hanging.
 */
export const PENDING_MS = 10_000

/** The local connections waiting for the hub. */
export interface Waiting {
  /** Keeps `socket`, accepted for service `name`, until the hub is back (see `flush`) or `PENDING_MS` passed. */
  readonly add: (name: string, socket: Net.Socket) => void
  /**
   * Hands the waiting sockets to `client`, service by service, once the hub says the service can be reached: right
   * after a hub restart the exposing agent may not be back yet, and a socket opened too early would be reset although
   * the service returns a moment later. Checks every 500 ms (each check is a `Reach` the hub audits, so not more
   * often) until none waits or the connection closes; each socket still gives up after its pending time.
   */
  readonly flush: (client: HubClient.HubClientService) => Effect.Effect<void>
  /** Resets every waiting socket (the agent is stopping). */
  readonly close: () => void
}

interface Entry {
  readonly name: string
  readonly socket: Net.Socket
  readonly timer: NodeJS.Timeout
}

/** No connection waits yet; `pending` is how long one may (default `PENDING_MS`). */
export const make = (options: {
  readonly link: Link
  readonly err: (line: string) => void
  readonly pending?: Duration.DurationInput | undefined
}): Waiting => {
  const pendingMs = Duration.toMillis(options.pending ?? PENDING_MS)
  const pending = new Set<Entry>()

  const add = (name: string, socket: Net.Socket) => {
    // A timer of the socket's own, not Effect's clock: it is armed from the listener's callback, outside any fiber.
    const entry: Entry = {
      name,
      socket,
      timer: setTimeout(() => {
        pending.delete(entry)
        options.err(`reach ${name}: not connected to the hub for ${pendingMs / 1000} s; closed a local connection`)
        socket.resetAndDestroy()
      }, pendingMs)
    }
    pending.add(entry)
    options.link.waiting(name)
    socket.once("close", () => {
      clearTimeout(entry.timer)
      pending.delete(entry)
    })
  }

  const flush = (client: HubClient.HubClientService) =>
    Effect.gen(function*() {
      while (pending.size > 0 && !client.connection.closed) {
        for (const name of new Set([...pending].map((e) => e.name))) {
          const ready = yield* Effect.scoped(client.reach(name, { port: 0 })).pipe(
            Effect.as(true),
            Effect.orElseSucceed(() => false)
          )
          if (!ready || client.connection.closed) continue
          for (const entry of pending) {
            if (entry.name !== name) continue
            clearTimeout(entry.timer)
            pending.delete(entry)
            if (!entry.socket.destroyed) client.open(entry.name, entry.socket)
          }
        }
        if (pending.size > 0) yield* Effect.sleep("500 millis")
      }
    })

  const close = () => {
    for (const entry of pending) {
      clearTimeout(entry.timer)
      entry.socket.resetAndDestroy()
    }
    pending.clear()
  }

  return { add, flush, close }
}
