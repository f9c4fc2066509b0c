/**
 * Multiplexing of many local TCP sockets over one connection, with per-stream credit windows: the agent-side
 * stream engine. A socket is read only while its stream has credit and the connection is not congested; received
 * bytes are credited back only once the socket accepted them, so a slow reader throttles its sender end to end.
 */
import type * as Net from "node:net"
import { ConnectionWindow, Credit, End, MaxChunk, Open, Opened, Reset, StreamWindow } from "../core/Protocol.ts"
import type { Message } from "../core/Protocol.ts"
import type { Connection } from "../core/Transport.ts"
import { trusted } from "./Framing.ts"

/** Why a stream ended, reported to `onStreamClosed`. */
export interface StreamClosed {
  readonly stream: number
  /** "closed" after a clean close in both directions, else the reset reason or error code. */
  readonly reason: string
  readonly bytesIn: number
  readonly bytesOut: number
}

/** Options of `make`. */
export interface MuxOptions {
  /** Stream window in bytes (default `StreamWindow`; both ends must agree). */
  readonly window?: number
  /** Bytes handed to the hub and not yet given back by its `Window` (default `ConnectionWindow`; the hub enforces it). */
  readonly connectionWindow?: number
  /** Called once per stream when it ends. */
  readonly onStreamClosed?: (closed: StreamClosed) => void
  /** Called when the peer confirms that the far end connected (`Opened`). */
  readonly onOpened?: (stream: number) => void
}

interface Stream {
  readonly id: number
  readonly socket: Net.Socket
  /** Bytes we may still send. */
  sendCredit: number
  /** Bytes the peer may still send us (checked, so a misbehaving peer cannot make us buffer without bound). */
  recvWindow: number
  /** Bytes of the peer written to the socket (accepted by the kernel or still queued in it). */
  written: number
  /** Bytes of `written` already credited back to the peer. */
  credited: number
  /** Re-checks the grant once a queued socket write completes. */
  readonly onWritten: () => void
  /** Read but not yet sent for lack of credit (at most one chunk). */
  held: Buffer | undefined
  eof: boolean
  localEnded: boolean
  remoteEnded: boolean
  paused: boolean
  done: boolean
  error: string | undefined
  bytesIn: number
  bytesOut: number
}

/** The stream engine of one connection. */
export interface Mux {
  /** Opens a stream to `service` for an accepted socket (reach side); bytes flow at once, before `Opened`. */
  readonly open: (service: string, socket: Net.Socket) => number
  /** Attaches a socket to a stream the peer opened (expose side). */
  readonly attach: (stream: number, socket: Net.Socket) => void
  /** Routes a stream message (Data, Credit, Window, End, Reset, Opened, Error with a stream); false if not one. */
  readonly handle: (message: Message) => boolean
  /** Resumes sockets paused by connection congestion; wire it to the connection's `drain`. */
  readonly drain: () => void
  /** Resets every stream (the connection is gone). */
  readonly closeAll: (reason: string) => void
  /** Number of live streams. */
  readonly size: () => number
  /** Bytes written to local sockets and not yet flushed by them (bounded by streams × window). */
  readonly bufferedBytes: () => number
}

/** Builds the stream engine for `connection`; stream ids it opens are odd. */
export const make = (connection: Connection, options: MuxOptions = {}): Mux => {
  const window = options.window ?? StreamWindow
  // Credit goes back once a sixteenth of the window has reached the kernel: the sender still holds ≥ 15/16 of its
  // window, so it never idles on a grant, while a 64 B ping-pong sends no Credit frames at all (one per 256 KiB of a
  // 4 MiB window instead of one per chunk).
  const threshold = Math.max(1, Math.floor(window / 16))
  const streams = new Map<number, Stream>()
  const congestedPaused = new Set<Stream>()
  // Connection-level credit: bytes the hub has not yet passed on, over every stream; the hub's `Window` gives them back.
  // Streams that hold a chunk for want of it wait here, in arrival order, for the next Window.
  const connectionWindow = options.connectionWindow ?? ConnectionWindow
  let connectionCredit = connectionWindow
  const starved = new Set<Stream>()
  let nextId = 1

  const updateFlow = (s: Stream) => {
    const read = !s.done && !s.eof && s.held === undefined && s.sendCredit > 0 && !connection.congested
    if (read && s.paused) {
      s.paused = false
      s.socket.resume()
    } else if (!read && !s.paused) {
      s.paused = true
      s.socket.pause()
    }
    if (!read && connection.congested) congestedPaused.add(s)
  }

  const sendEnd = (s: Stream) => {
    if (s.localEnded) return
    s.localEnded = true
    connection.send(trusted(End, { stream: s.id }))
    maybeDone(s)
  }

  const push = (s: Stream, chunk: Buffer) => {
    while (chunk.byteLength > 0) {
      const n = Math.min(chunk.byteLength, s.sendCredit, MaxChunk, connectionCredit)
      if (n === 0) {
        s.held = chunk
        if (s.sendCredit > 0) starved.add(s)
        break
      }
      connection.sendData(s.id, n === chunk.byteLength ? chunk : chunk.subarray(0, n))
      s.sendCredit -= n
      connectionCredit -= n
      s.bytesOut += n
      chunk = chunk.subarray(n)
    }
    updateFlow(s)
  }

  /** Credits the bytes the socket handed to the kernel since the last grant, once they reach the threshold. */
  const grant = (s: Stream) => {
    if (s.done) return
    const n = s.written - s.socket.writableLength - s.credited
    if (n < threshold) return
    s.credited += n
    s.recvWindow += n
    connection.send(trusted(Credit, { stream: s.id, bytes: n }))
  }

  /** Gives held chunks a turn after connection credit came back, oldest waiter first. */
  const feedStarved = () => {
    for (const s of starved) {
      if (connectionCredit === 0) return
      starved.delete(s)
      resume(s)
    }
  }

  /** Sends what the stream holds (if it can now) and resumes reading its socket. */
  const resume = (s: Stream) => {
    const held = s.held
    if (held) {
      s.held = undefined
      push(s, held)
      if (s.held === undefined && s.eof) sendEnd(s)
    } else {
      updateFlow(s)
    }
  }

  const finish = (s: Stream, reason: string) => {
    if (s.done) return
    s.done = true
    streams.delete(s.id)
    congestedPaused.delete(s)
    starved.delete(s)
    options.onStreamClosed?.({ stream: s.id, reason, bytesIn: s.bytesIn, bytesOut: s.bytesOut })
  }

  const maybeDone = (s: Stream) => {
    // The socket's "close" finishes the stream; nothing to do until both directions ended.
    if (s.localEnded && s.remoteEnded && s.socket.destroyed) finish(s, "closed")
  }

  const reset = (s: Stream, reason: string) => {
    if (s.done) return
    finish(s, reason)
    s.socket.resetAndDestroy()
  }

  const attach = (id: number, socket: Net.Socket) => {
    const s: Stream = {
      id,
      socket,
      sendCredit: window,
      recvWindow: window,
      written: 0,
      credited: 0,
      onWritten: () => grant(s),
      held: undefined,
      eof: false,
      localEnded: false,
      remoteEnded: false,
      paused: false,
      done: false,
      error: undefined,
      bytesIn: 0,
      bytesOut: 0
    }
    streams.set(id, s)
    socket.setNoDelay(true)
    socket.on("data", (chunk: Buffer) => push(s, chunk))
    socket.on("end", () => {
      s.eof = true
      if (s.held === undefined) sendEnd(s)
    })
    socket.on("error", (error: NodeJS.ErrnoException) => {
      s.error ??= error.code ?? "Error"
    })
    socket.on("close", () => {
      if (s.done) return
      if (s.localEnded && s.remoteEnded && s.error === undefined) return finish(s, "closed")
      const reason = s.error ?? "Closed"
      connection.send(trusted(Reset, { stream: id, reason }))
      finish(s, reason)
    })
    updateFlow(s)
  }

  const onData = (s: Stream, payload: Uint8Array) => {
    const n = payload.byteLength
    if (n > s.recvWindow) {
      connection.send(trusted(Reset, { stream: s.id, reason: "FlowControl" }))
      return reset(s, "FlowControl")
    }
    if (s.remoteEnded) return
    s.recvWindow -= n
    s.bytesIn += n
    s.written += n
    // A write the kernel takes at once is done when write() returns; a queued one re-checks in its callback.
    s.socket.write(payload, s.onWritten)
    grant(s)
  }

  const handle = (message: Message): boolean => {
    switch (message._tag) {
      case "Data": {
        const s = streams.get(message.stream)
        if (s) onData(s, message.payload)
        return true
      }
      case "Credit": {
        const s = streams.get(message.stream)
        if (!s) return true
        // Never more than was sent: a credit beyond it would switch the window off.
        s.sendCredit += Math.min(message.bytes, window - s.sendCredit)
        // Without connection credit, resume() holds the chunk again and queues the stream for the next Window.
        starved.delete(s)
        resume(s)
        return true
      }
      case "Window": {
        connectionCredit = Math.min(connectionWindow, connectionCredit + message.bytes)
        feedStarved()
        return true
      }
      case "End": {
        const s = streams.get(message.stream)
        if (!s || s.remoteEnded) return true
        s.remoteEnded = true
        s.socket.end()
        maybeDone(s)
        return true
      }
      case "Reset": {
        const s = streams.get(message.stream)
        if (s) reset(s, message.reason)
        return true
      }
      case "Opened": {
        options.onOpened?.(message.stream)
        return true
      }
      case "Error": {
        if (message.stream === undefined) return false
        const s = streams.get(message.stream)
        if (s) reset(s, message.code)
        return true
      }
      default:
        return false
    }
  }

  return {
    open: (service, socket) => {
      const id = nextId
      nextId = nextId >= 0xffff_fffd ? 1 : nextId + 2
      connection.send(trusted(Open, { stream: id, service }))
      attach(id, socket)
      return id
    },
    attach,
    handle,
    drain: () => {
      const paused = [...congestedPaused]
      congestedPaused.clear()
      for (const s of paused) updateFlow(s)
    },
    closeAll: (reason) => {
      for (const s of [...streams.values()]) reset(s, reason)
    },
    size: () => streams.size,
    bufferedBytes: () => {
      let total = 0
      for (const s of streams.values()) total += s.socket.writableLength
      return total
    }
  }
}

/** Confirms to the peer that the far end of a stream it opened is connected. */
export const opened = (connection: Connection, stream: number): void => connection.send(trusted(Opened, { stream }))
