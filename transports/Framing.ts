/**
 * Framing rules shared by every codec: the frame size cap, validation of decoded control messages, and the
 * protocol errors a bad frame turns into.
 */
import { Either, ParseResult, Schema } from "effect"
import { MaxFrame, Message } from "../core/Protocol.ts"
import { TransportError } from "../core/Transport.ts"

const decodeMessage = Schema.decodeUnknownEither(Message)

/** A `TransportError` with reason "Protocol" for a frame that cannot be accepted. */
export const protocolError = (message: string, cause?: unknown): TransportError =>
  new TransportError({ reason: "Protocol", message, ...(cause === undefined ? {} : { cause }) })

/** Throws "FrameTooLarge" when a frame of `length` bytes exceeds `MaxFrame`. */
export const checkFrameSize = (length: number): void => {
  if (length > MaxFrame) {
    throw new TransportError({ reason: "FrameTooLarge", message: `frame of ${length} bytes exceeds ${MaxFrame}` })
  }
}

/** Validates a decoded plain object as a protocol message, throwing a protocol error when it is not one. */
export const toMessage = (value: unknown): Message => {
  const result = decodeMessage(value)
  if (Either.isLeft(result)) {
    throw protocolError(`invalid message: ${ParseResult.TreeFormatter.formatErrorSync(result.left).slice(0, 200)}`)
  }
  return result.right
}

/** True for a valid stream id (u32, non-zero). */
export const isStreamId = (n: unknown): n is number =>
  typeof n === "number" && Number.isInteger(n) && n >= 1 && n <= 0xffff_ffff
