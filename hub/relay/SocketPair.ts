/**
 * Two in-process ends of a byte stream that behave enough like `net.Socket`s for node's HTTP client on one side and
 * the stream engine (transports/Mux.ts) on the other: what one end writes the other reads, with backpressure (a write
 * completes once the reader has room), half-close (`end()` is the peer's EOF), and a destroy that reaches the peer as
 * a reset (`ECONNRESET`, or the relay's reason) unless both directions had ended cleanly.
 */
import { Duplex } from "node:stream"

/** One end of a pair. */
export class PairSocket extends Duplex {
  /** The other end. */
  peer: PairSocket | undefined
  /** Set before `resetAndDestroy` by whoever knows why the stream was reset (the peer sees it as the error's code). */
  resetReason: string | undefined
  /** Address shown to the HTTP client (and in its errors). */
  readonly remoteAddress: string
  readonly remotePort = 0
  readonly localAddress = "127.0.0.1"
  readonly localPort = 0
  readonly connecting = false
  /** A write of this end waiting for the peer's reader. */
  private waiting: ((error?: Error | null) => void) | undefined
  private idleMs = 0
  private idleTimer: NodeJS.Timeout | undefined

  constructor(remoteAddress: string, allowHalfOpen: boolean) {
    super({ allowHalfOpen })
    this.remoteAddress = remoteAddress
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void) {
    const peer = this.peer
    if (!peer || peer.destroyed || peer.readableEnded) return callback(resetError("EPIPE"))
    this.touch()
    peer.touch()
    if (peer.push(chunk)) return callback()
    peer.waiting = callback
  }

  override _read() {
    const waiting = this.waiting
    this.waiting = undefined
    waiting?.()
  }

  override _final(callback: (error?: Error | null) => void) {
    this.peer?.push(null)
    callback()
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void) {
    this.clearIdle()
    const waiting = this.peer?.waiting
    if (this.peer) this.peer.waiting = undefined
    waiting?.(resetError("EPIPE"))
    const peer = this.peer
    if (peer && !peer.destroyed) {
      // Both directions ended cleanly: the peer closes too, without an error. Anything else is a reset for the peer.
      const clean = error === null && this.readableEnded && this.writableFinished && this.resetReason === undefined
      if (clean) peer.destroy()
      else peer.destroy(resetError(this.resetReason ?? "ECONNRESET"))
    }
    callback(error)
  }

  /** Destroys this end; the peer sees a reset with `resetReason` (Net.Socket's method of the same name). */
  resetAndDestroy() {
    this.resetReason ??= "ECONNRESET"
    this.destroy()
    return this
  }

  setNoDelay() {
    return this
  }

  setKeepAlive() {
    return this
  }

  ref() {
    return this
  }

  unref() {
    return this
  }

  /**
   * Emits `timeout` after `ms` without a byte either way, as `net.Socket#setTimeout` does: 0 turns it off and removes
   * `callback` (node's HTTP client calls `setTimeout(0, its callback)` as each request on a kept-alive connection ends;
   * adding it again instead kept every request of the connection's life reachable from its listeners).
   */
  setTimeout(ms: number, callback?: () => void) {
    if (callback && ms === 0) this.removeListener("timeout", callback)
    else if (callback) this.once("timeout", callback)
    // A new length starts a new timer: `refresh()` would keep the old one's (a request's 2 s under the pool's 30 s).
    this.clearIdle()
    this.idleMs = ms
    this.touch()
    return this
  }

  private touch() {
    if (this.idleMs <= 0) return this.clearIdle()
    if (this.idleTimer) return void this.idleTimer.refresh()
    this.idleTimer = setTimeout(() => this.emit("timeout"), this.idleMs).unref()
  }

  private clearIdle() {
    if (this.idleTimer) clearTimeout(this.idleTimer)
    this.idleTimer = undefined
  }
}

const resetError = (code: string): NodeJS.ErrnoException =>
  Object.assign(new Error(code === "EPIPE" ? "the stream is closed" : `the stream was reset (${code})`), { code })

/**
 * Two connected ends; `remoteAddress` is what the first one (the HTTP client's) reports as its peer. The first ends
 * its own side when the peer's EOF arrives, as a `net.Socket` does by default, so that a kept-alive connection the
 * service closed leaves the pool instead of taking the next request; the second is half-open like the agents' sockets.
 */
export const make = (remoteAddress: string): readonly [PairSocket, PairSocket] => {
  const a = new PairSocket(remoteAddress, false)
  const b = new PairSocket("hub", true)
  a.peer = b
  b.peer = a
  return [a, b]
}
