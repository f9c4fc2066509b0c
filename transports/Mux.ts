/**
 * Multiplexing of many local TCP sockets over one connection, with per-stream credit windows: the agent-side
 * stream engine. A socket is read only while its stream has credit and the connection is not congested; received
 * bytes are credited back only once the socket accepted them, so a slow reader throttles its sender end to end.
 */
import type * as Net from "node:net"
import { CONNECTION_WINDOW, Credit, End, MAX_CHUNK, Open, Opened, Reset, STREAM_WINDOW } from "../core/Protocol.ts"
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
  /** Stream window in bytes (default `STREAM_WINDOW`; both ends must agree). */
  readonly window?: number
  /** Bytes handed to the hub and not yet given back by its `Window` (default `CONNECTION_WINDOW`; the hub enforces it). */
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
  /**
   * Attaches a socket to a stream the peer opened (expose side). A socket created with `onread` (see `READ_BUFFER`)
   * has no "data" events: its callback hands each chunk to the function returned, which copies what it keeps.
   */
  readonly attach: (stream: number, socket: Net.Socket) => (chunk: Buffer) => void
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

/** The streams of one connection and the connection-level state their accounting shares. */
interface Table {
  readonly connection: Connection
  readonly options: MuxOptions
  /** Stream window in bytes. */
  readonly window: number
  /** Bytes written to a socket before they are credited back (see `make`). */
  readonly threshold: number
  readonly streams: Map<number, Stream>
  /** Streams paused because the connection is congested, resumed on `drain`. */
  readonly congestedPaused: Set<Stream>
  /** Connection-level credit: bytes the hub has not yet passed on, over every stream; its `Window` gives them back. */
  readonly connectionWindow: number
  connectionCredit: number
  /** Streams holding a chunk for want of connection credit, in arrival order, waiting for the next `Window`. */
  readonly starved: Set<Stream>
}

/** How a stream ends: once, reported to `onStreamClosed`, dropped from the table. */
const lifecycle = (table: Table) => {
  const finish = (s: Stream, reason: string) => {
    if (s.done) return
    s.done = true
    table.streams.delete(s.id)
    table.congestedPaused.delete(s)
    table.starved.delete(s)
    table.options.onStreamClosed?.({ stream: s.id, reason, bytesIn: s.bytesIn, bytesOut: s.bytesOut })
  }
  return {
    finish,
    maybeDone: (s: Stream) => {
      // The socket's "close" finishes the stream; nothing to do until both directions ended.
      if (s.localEnded && s.remoteEnded && s.socket.destroyed) finish(s, "closed")
    },
    reset: (s: Stream, reason: string) => {
      if (s.done) return
      finish(s, reason)
      s.socket.resetAndDestroy()
    }
  }
}

type Lifecycle = ReturnType<typeof lifecycle>

/** The send side: a socket is read only while its stream and the connection have credit and nothing is held. */
const sending = (table: Table, { maybeDone }: Lifecycle) => {
  const { connection } = table

  const updateFlow = (s: Stream) => {
    const read = !s.done && !s.eof && s.held === undefined && s.sendCredit > 0 && !connection.congested
    if (read && s.paused) {
      s.paused = false
      s.socket.resume()
    } else if (!read && !s.paused) {
      s.paused = true
      s.socket.pause()
    }
    if (!read && connection.congested) table.congestedPaused.add(s)
  }

  const sendEnd = (s: Stream) => {
    if (s.localEnded) return
    s.localEnded = true
    connection.send(trusted(End, { stream: s.id }))
    maybeDone(s)
  }

  /** Sends what `chunk` holds as credit allows and holds the rest; a `borrowed` chunk is reused once this returns. */
  const push = (s: Stream, chunk: Buffer, borrowed = false) => {
    while (chunk.byteLength > 0) {
      const n = Math.min(chunk.byteLength, s.sendCredit, MAX_CHUNK, table.connectionCredit)
      if (n === 0) {
        s.held = borrowed ? Buffer.from(chunk) : chunk
        if (s.sendCredit > 0) table.starved.add(s)
        break
      }
      connection.sendData(s.id, n === chunk.byteLength ? chunk : chunk.subarray(0, n))
      s.sendCredit -= n
      table.connectionCredit -= n
      s.bytesOut += n
      chunk = chunk.subarray(n)
    }
    updateFlow(s)
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

  return {
    updateFlow,
    sendEnd,
    push,
    resume,
    /** The peer granted `bytes` more of the stream's window. */
    credit: (s: Stream, bytes: number) => {
      // Never more than was sent: a credit beyond it would switch the window off.
      s.sendCredit += Math.min(bytes, table.window - s.sendCredit)
      // Without connection credit, resume() holds the chunk again and queues the stream for the next Window.
      table.starved.delete(s)
      resume(s)
    },
    /** The hub passed `bytes` on: held chunks get a turn, oldest waiter first. */
    window: (bytes: number) => {
      table.connectionCredit = Math.min(table.connectionWindow, table.connectionCredit + bytes)
      for (const s of table.starved) {
        if (table.connectionCredit === 0) return
        table.starved.delete(s)
        resume(s)
      }
    }
  }
}

type Sending = ReturnType<typeof sending>

/** The receive side: the peer's bytes checked against its window, credited back once the socket accepted them. */
const receiving = (table: Table, { reset }: Lifecycle) => {
  const { connection } = table

  /** Credits the bytes the socket handed to the kernel since the last grant, once they reach the threshold. */
  const grant = (s: Stream) => {
    if (s.done) return
    const n = s.written - s.socket.writableLength - s.credited
    if (n < table.threshold) return
    s.credited += n
    s.recvWindow += n
    connection.send(trusted(Credit, { stream: s.id, bytes: n }))
  }

  const data = (s: Stream, payload: Uint8Array) => {
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

  return { grant, data }
}

/** Puts a socket in the table as stream `id` and wires its events to the send side and the lifecycle. */
const attacher = (table: Table, { finish }: Lifecycle, { push, sendEnd, updateFlow }: Sending, grant: (s: Stream) => void) =>
(id: number, socket: Net.Socket) => {
  const s: Stream = {
    id,
    socket,
    sendCredit: table.window,
    recvWindow: table.window,
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
  table.streams.set(id, s)
  socket.setNoDelay(true)
  socket.on("data", (chunk: Buffer) => push(s, chunk))
  const borrowed = (chunk: Buffer) => push(s, chunk, true)
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
    table.connection.send(trusted(Reset, { stream: id, reason }))
    finish(s, reason)
  })
  updateFlow(s)
  return borrowed
}

/**
 * The buffer sockets this process connects read into (`onread`), shared by all of them: reads run one at a time and
 * `push` copies what it keeps (a codec's `sendData` copies what it sends), so none is allocated per read. Node
 * otherwise allocates 64 KiB for every read, and passes the bytes through the socket's readable stream: per small
 * request that was among an exposing agent's largest costs besides the system calls.
 */
export const READ_BUFFER = Buffer.allocUnsafe(MAX_CHUNK)

/** Builds the stream engine for `connection`; stream ids it opens are odd. */
export const make = (connection: Connection, options: MuxOptions = {}): Mux => {
  const window = options.window ?? STREAM_WINDOW
  const connectionWindow = options.connectionWindow ?? CONNECTION_WINDOW
  const table: Table = {
    connection,
    options,
    window,
    // Credit goes back once a sixteenth of the window has reached the kernel: the sender still holds ≥ 15/16 of its
    // window, so it never idles on a grant, while a 64 B ping-pong sends no Credit frames at all (one per 256 KiB of a
    // 4 MiB window instead of one per chunk).
    threshold: Math.max(1, Math.floor(window / 16)),
    streams: new Map(),
    congestedPaused: new Set(),
    connectionWindow,
    connectionCredit: connectionWindow,
    starved: new Set()
  }
  const { streams } = table
  const ends = lifecycle(table)
  const send = sending(table, ends)
  const receive = receiving(table, ends)
  const attach = attacher(table, ends, send, receive.grant)
  let nextId = 1

  const handle = (message: Message): boolean => {
    switch (message._tag) {
      case "Data": {
        const s = streams.get(message.stream)
        if (s) receive.data(s, message.payload)
        return true
      }
      case "Credit": {
        const s = streams.get(message.stream)
        if (s) send.credit(s, message.bytes)
        return true
      }
      case "Window": {
        send.window(message.bytes)
        return true
      }
      case "End": {
        const s = streams.get(message.stream)
        if (!s || s.remoteEnded) return true
        s.remoteEnded = true
        s.socket.end()
        ends.maybeDone(s)
        return true
      }
      case "Reset": {
        const s = streams.get(message.stream)
        if (s) ends.reset(s, message.reason)
        return true
      }
      case "Opened": {
        options.onOpened?.(message.stream)
        return true
      }
      case "Error": {
        if (message.stream === undefined) return false
        const s = streams.get(message.stream)
        if (s) ends.reset(s, message.code)
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
      const paused = [...table.congestedPaused]
      table.congestedPaused.clear()
      for (const s of paused) send.updateFlow(s)
    },
    closeAll: (reason) => {
      for (const s of [...streams.values()]) ends.reset(s, reason)
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
