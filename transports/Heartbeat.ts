/**
 * Heartbeats: a side that has heard nothing for a while sends `Ping`, and closes the connection with
 * `CLOSE_CODES.Timeout` when nothing at all arrived within the timeout.
 */
import { Duration, Effect } from "effect"
import { Ping } from "../core/Protocol.ts"
import { CLOSE_CODES, TransportError } from "../core/Transport.ts"
import type { Connection } from "../core/Transport.ts"

/** Heartbeat timing. */
export interface HeartbeatOptions {
  /** How often to check and ping. */
  readonly interval: Duration.DurationInput
  /** Silence after which the peer is declared dead. */
  readonly timeout: Duration.DurationInput
}

/**
 * Defaults: a ping every 15 s and death after 45 s of silence — three missed pings, well under the 60–120 s idle
 * timeouts of common NATs and proxies, which the pings also keep open.
 */
export const defaults: HeartbeatOptions = { interval: "15 seconds", timeout: "45 seconds" }

/**
 * Runs until the connection closes (succeeds) or the peer goes silent (closes it and fails with "Timeout").
 * Liveness is any received frame, so a busy connection needs no pongs; time comes from the Effect clock.
 */
export const run = Effect.fn("Heartbeat.run")(function*(connection: Connection, options: HeartbeatOptions = defaults) {
  const intervalMs = Duration.toMillis(options.interval)
  const timeoutMs = Duration.toMillis(options.timeout)
  let seen = connection.received
  let silentMs = 0
  let nonce = 0
  while (!connection.closed) {
    yield* Effect.sleep(options.interval)
    if (connection.closed) return
    if (connection.received !== seen) {
      seen = connection.received
      silentMs = 0
    } else {
      silentMs += intervalMs
    }
    if (silentMs >= timeoutMs) {
      connection.close(CLOSE_CODES.Timeout, "heartbeat timeout")
      return yield* new TransportError({ reason: "Timeout", message: `no frame for ${silentMs} ms` })
    }
    connection.send(new Ping({ nonce: ++nonce }))
  }
})
