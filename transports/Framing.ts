/**
 * Framing rules shared by every codec: the frame size cap, validation of decoded control messages, and the
 * protocol errors a bad frame turns into.
 */
import { Either, ParseResult, Schema } from "effect"
import {
  CONNECTION_WINDOW,
  Credit,
  End,
  MAX_FRAME,
  Message,
  Open,
  Opened,
  Ping,
  Pong,
  Reset,
  STREAM_WINDOW,
  Window
} from "../core/Protocol.ts"
import { maskPeer } from "../core/Mask.ts"
import { scrub } from "../core/Scrub.ts"
import { TransportError } from "../core/Transport.ts"

const decodeMessage = Schema.decodeUnknownEither(Message)

/** A `TransportError` with reason "Protocol" for a frame that cannot be accepted. */
export const protocolError = (message: string, cause?: unknown): TransportError =>
  new TransportError({ reason: "Protocol", message, ...(cause === undefined ? {} : { cause }) })

/** Throws "FrameTooLarge" when a frame of `length` bytes exceeds `MAX_FRAME`. */
export const checkFrameSize = (length: number): void => {
  if (length > MAX_FRAME) {
    throw new TransportError({ reason: "FrameTooLarge", message: `frame of ${length} bytes exceeds ${MAX_FRAME}` })
  }
}

/**
 * Builds a message of class `klass` from fields that are already valid (checked by hand or produced locally) without
 * running its Schema constructor: ~60 ns instead of ~2 µs, which counts at one message per 64 KiB chunk and several
 * per stream opened. The result is an ordinary instance: same prototype, same own properties, `_tag` last.
 */
export const trusted = <M extends Message>(
  klass: { readonly _tag: M["_tag"]; readonly prototype: unknown; new(...args: never): M },
  fields: Omit<M, "_tag">
): M => {
  const message = Object.assign(Object.create(klass.prototype as object), fields)
  message._tag = klass._tag
  return message
}

/** Hand-checked decoding of the control messages every stream exchanges; others go through the Schema. */
const fastMessage = (value: Record<string, unknown>): Message | undefined => {
  const stream = value.stream
  switch (value._tag) {
    case "Open":
      return isStreamId(stream) && typeof value.service === "string"
        ? trusted(Open, { stream, service: value.service })
        : undefined
    case "Opened":
      return isStreamId(stream) ? trusted(Opened, { stream }) : undefined
    case "End":
      return isStreamId(stream) ? trusted(End, { stream }) : undefined
    case "Reset":
      return isStreamId(stream) && typeof value.reason === "string"
        ? trusted(Reset, { stream, reason: value.reason })
        : undefined
    case "Credit": {
      // The ws codec's Credit (msgpack has a binary one): one per 256 KiB a stream moves, ~2 µs each through the Schema.
      const bytes = value.bytes
      return isStreamId(stream) && typeof bytes === "number" && Number.isInteger(bytes) && bytes >= 1 &&
          bytes <= STREAM_WINDOW
        ? trusted(Credit, { stream, bytes })
        : undefined
    }
    case "Window": {
      const bytes = value.bytes
      return typeof bytes === "number" && Number.isInteger(bytes) && bytes >= 1 && bytes <= CONNECTION_WINDOW
        ? trusted(Window, { bytes })
        : undefined
    }
    case "Ping":
      return typeof value.nonce === "number" ? trusted(Ping, { nonce: value.nonce }) : undefined
    case "Pong":
      return typeof value.nonce === "number" ? trusted(Pong, { nonce: value.nonce }) : undefined
    default:
      return undefined
  }
}

/** Validates a decoded plain object as a protocol message, throwing a protocol error when it is not one. */
export const toMessage = (value: unknown): Message => {
  if (typeof value === "object" && value !== null) {
    const fast = fastMessage(value as Record<string, unknown>)
    if (fast) return fast
  }
  const result = decodeMessage(value)
  if (Either.isLeft(result)) {
    throw protocolError(`invalid message: ${ParseResult.TreeFormatter.formatErrorSync(result.left).slice(0, 200)}`)
  }
  return result.right
}

/**
 * Delivers one message to a connection's handler: the boundary between one peer and the process. An exception
 * thrown while handling a frame (a bug, or an input nobody foresaw) is reported through `failed`, which closes that
 * one connection with 1011; it never reaches the event loop, where it would end the hub and every tenant's tunnels.
 */
export const deliverGuarded = (
  handle: (message: Message) => void,
  message: Message,
  failed: (error: unknown) => void
): void => {
  try {
    handle(message)
  } catch (error) {
    failed(error)
  }
}

/**
 * Reports an exception a connection's handler threw (on stderr: the operator's log, never the peer): the address
 * masked and the whole line scrubbed, as every log line (core/Scrub.ts).
 */
export const reportInternal = (transport: string, remoteAddress: string, error: unknown): void => {
  const detail = error instanceof Error ? error.stack ?? error.message : String(error)
  console.error(scrub(`connect: closed a ${transport} connection from ${maskPeer(remoteAddress)} after an internal error: ${detail}`))
}

/** True for a valid stream id (u32, non-zero). */
export const isStreamId = (n: unknown): n is number =>
  typeof n === "number" && Number.isInteger(n) && n >= 1 && n <= 0xffff_ffff
