/**
 * The running agent's hub connection as its listeners and operations see it: the client while it is connected, and,
 * while the reconnect loop waits out a backoff, the way a local connection waiting on a reach port cuts that wait
 * short.
 */
import type * as HubClient from "./HubClient.ts"

/** Least time between two reconnects triggered by local connections waiting on a reach port. */
export const WAKE_INTERVAL_MS = 1_000

/** The agent's current hub connection. */
export interface Link {
  /** The client while its connection is open, else undefined. */
  readonly live: () => HubClient.HubClientService | undefined
  /** Sets the client once connected (and its exposures restored); undefined when the session ended. */
  readonly set: (client: HubClient.HubClientService | undefined) => void
  /** Set by the reconnect loop while it waits: the function that ends the wait at once; undefined otherwise. */
  readonly onWake: (wake: (() => void) | undefined) => void
  /**
   * A local connection is waiting on reach `name`: try the hub now rather than after the rest of the backoff (at most
   * once per `WAKE_INTERVAL_MS`, so a client retrying in a loop cannot turn into a reconnect storm).
   */
  readonly waiting: (name: string) => void
}

/** A link with no client; `err` gets the line saying a waiting connection triggered a reconnect. */
export const make = (err: (line: string) => void): Link => {
  let current: HubClient.HubClientService | undefined
  let wake: (() => void) | undefined
  let lastWake = 0
  return {
    live: () => (current !== undefined && !current.connection.closed ? current : undefined),
    set: (client) => {
      current = client
    },
    onWake: (f) => {
      wake = f
    },
    waiting: (name) => {
      if (wake === undefined || Date.now() - lastWake < WAKE_INTERVAL_MS) return
      lastWake = Date.now()
      err(`reach ${name}: a local connection is waiting; reconnecting now`)
      wake()
    }
  }
}
