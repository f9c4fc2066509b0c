/**
 * The hub's side of each agent connection's `CONNECTION_WINDOW`: how many bytes of `Data` the agent has handed to the
 * hub that the hub has not passed on yet, given back with `Window` frames once they are written towards their
 * receiver (or dropped). It bounds what one agent can make the hub hold to one window, whatever its streams' readers
 * do, without letting streams whose readers never credit starve the rest: only bytes the hub itself still holds count.
 */
import { CONNECTION_WINDOW, Window, WINDOW_GRANT } from "../../core/Protocol.ts"
import type { Connection } from "../../core/Transport.ts"
import { trusted } from "../../transports/Framing.ts"

/** One connection's window: what it sent that the hub holds, and what the hub writes for others on it. */
export interface Ledger {
  /** Counts `n` bytes of `Data` received from this connection; false when they exceed its window. */
  readonly receive: (n: number) => boolean
  /** Gives back `n` counted bytes (passed on or dropped); a `Window` goes out once `WINDOW_GRANT` bytes are owed. */
  readonly giveBack: (n: number) => void
  /** Gives back `n` bytes that were never counted (`Data` of a stream the hub had already closed). */
  readonly owe: (n: number) => void
  /** Writes `payload` to this connection for `sender`, whose bytes are given back when the frame is written. */
  readonly sendFor: (sender: Ledger, stream: number, payload: Uint8Array) => void
  /** The connection closed: bytes still queued towards it are given back to their senders; nothing more is granted. */
  readonly close: () => void
  /** True when the connection wrote something queued since the previous call (a reader that makes progress). */
  readonly progressed: () => boolean
  /** Bytes received from this connection that the hub still holds. */
  readonly held: () => number
}

/** Makes the ledger of `connection` with a window of `window` bytes. */
export const make = (connection: Connection, window: number = CONNECTION_WINDOW): Ledger => {
  const grant = Math.max(1, Math.min(WINDOW_GRANT, Math.floor(window / 16)))
  let held = 0
  let owed = 0
  let closed = false
  let progress = false
  // Frames queued towards this connection for other senders, in send order (the carrier calls back in that order).
  let senders: Array<Ledger | undefined> = []
  let sizes: Array<number> = []
  let head = 0

  const owe = (n: number) => {
    if (closed) return
    owed += n
    if (owed >= grant) {
      connection.send(trusted(Window, { bytes: owed }))
      owed = 0
    }
  }

  const written = () => {
    if (head >= senders.length) return
    const sender = senders[head]!
    const n = sizes[head]!
    senders[head] = undefined
    head++
    progress = true
    if (head > 1024 && head * 2 > senders.length) {
      senders = senders.slice(head)
      sizes = sizes.slice(head)
      head = 0
    }
    sender.giveBack(n)
  }

  const ledger: Ledger = {
    receive: (n) => {
      held += n
      return held <= window
    },
    giveBack: (n) => {
      held -= n
      owe(n)
    },
    owe,
    sendFor: (sender, stream, payload) => {
      senders.push(sender)
      sizes.push(payload.byteLength)
      connection.sendData(stream, payload, written)
    },
    close: () => {
      closed = true
      const queued = senders.slice(head)
      const queuedSizes = sizes.slice(head)
      senders = []
      sizes = []
      head = 0
      for (let i = 0; i < queued.length; i++) queued[i]!.giveBack(queuedSizes[i]!)
    },
    progressed: () => {
      const p = progress
      progress = false
      return p
    },
    held: () => held
  }
  return ledger
}
