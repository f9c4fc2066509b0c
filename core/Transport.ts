/**
 * The transport contract: a codec plus a carrier that moves protocol messages between an agent and the hub, behind
 * one `Connection` interface, so that a transport plugin is one file in transports/.
 */
import type { Effect, Scope } from "effect"
import { Schema } from "effect"
import type { Message } from "./Protocol.ts"

/** Why a transport operation failed. */
export class TransportError extends Schema.TaggedError<TransportError>()("TransportError", {
  reason: Schema.Literal("Open", "Read", "Write", "FrameTooLarge", "Protocol", "Timeout", "Closed"),
  message: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {}

/** WebSocket-compatible close codes used by every transport (4xxx are ours). */
export const CLOSE_CODES = {
  /** Orderly close. */
  Normal: 1000,
  /** The peer is shutting down. */
  GoingAway: 1001,
  /** A frame could not be decoded or broke the protocol. */
  Protocol: 1002,
  /** A frame exceeded `MAX_FRAME`. */
  FrameTooLarge: 1009,
  /** An unexpected failure inside the peer. */
  Internal: 1011,
  /** `Hello` was refused (unknown, expired or revoked token). */
  Unauthorized: 4001,
  /** `Hello` carried a protocol version the hub does not speak. */
  UnsupportedVersion: 4002,
  /** No traffic within the heartbeat timeout, or no `Hello` in time. */
  Timeout: 4008,
  /** Another connection of the same agent replaced this one. */
  Replaced: 4009,
  /** The peer does not read: the hub's buffer towards it passed its cap. */
  SlowConsumer: 4010
} as const

/** How a connection ended. */
export interface CloseInfo {
  /** Close code (see `CLOSE_CODES`; 1006 when the carrier vanished without one). */
  readonly code: number
  /** Close reason text. */
  readonly reason: string
}

/** Callbacks a connection delivers to; installed once by the connection's owner. */
export interface ConnectionHandler {
  /** One decoded message, in arrival order. */
  readonly message: (message: Message) => void
  /** The connection closed (once). */
  readonly close: (info: CloseInfo) => void
  /** `bufferedAmount` fell back under the low-water mark after the connection was congested. */
  readonly drain?: () => void
}

/**
 * One live connection carrying protocol messages.
 *
 * The byte-moving path is plain synchronous callbacks (no Effect per frame): a relay moves ~16k frames/s per
 * stream at 1 GB/s, where an Effect per frame would cap throughput.
 */
export interface Connection {
  /** Name of the transport plugin ("ws", "msgpack", "memory"). */
  readonly transport: string
  /** Address of the peer as seen by the carrier. */
  readonly remoteAddress: string
  /** Encodes and writes one message; dropped once the connection is closed. */
  readonly send: (message: Message) => void
  /**
   * Fast path for `send(new Data({ stream, payload }))`, which may forward a received frame without copying.
   * `written`, if given, is called once the frame has been handed to the operating system (or the connection closed
   * before it was), in send order: the hub gives a sender its connection window back from there.
   */
  readonly sendData: (stream: number, payload: Uint8Array, written?: () => void) => void
  /** Bytes accepted by `send` and not yet handed to the operating system. */
  readonly bufferedAmount: number
  /** True while `bufferedAmount` is above the high-water mark; sources should pause until `drain`. */
  readonly congested: boolean
  /** Number of frames received so far (heartbeats watch it for liveness). */
  readonly received: number
  /** True once the connection is closed or closing. */
  readonly closed: boolean
  /** Installs the handler; frames received before it are delivered on installation. */
  readonly setHandler: (handler: ConnectionHandler) => void
  /** Closes the connection with a code and reason; the handler's `close` fires once. */
  readonly close: (code: number, reason: string) => void
  /**
   * From now on, sends the small frames of one event-loop turn as one batch frame (see `Codec.batch`); called once the
   * peer said in `Hello`/`Welcome` that it reads them (`BATCH_REVISION`). A no-op on a carrier or codec without batches.
   */
  readonly enableBatching?: () => void
}

/** A transport plugin, client side: dials a hub URL and yields a connection closed with the scope. */
export interface Transport {
  /** Name the agent picks with `--transport`. */
  readonly name: string
  /** Opens a connection to the hub at `url`. */
  readonly dial: (url: string, options?: DialOptions) => Effect.Effect<Connection, TransportError, Scope.Scope>
}

/** How to dial: the certificates of the CAs to verify a `wss://` hub with (default: the system's). */
export interface DialOptions {
  readonly ca?: Array<string>
}

/**
 * A codec turns messages into frames and back; a WebSocket-carried plugin is a codec plus a subprotocol name.
 * `decode` throws a `TransportError` ("Protocol" / "FrameTooLarge") on a frame it cannot accept.
 */
export interface Codec {
  /** Name of the plugin. */
  readonly name: string
  /** WebSocket subprotocol the hub dispatches on. */
  readonly subprotocol: string
  /** Whether frames are binary (else text). */
  readonly binary: boolean
  /** Encodes a message into one frame. */
  readonly encode: (message: Message) => Uint8Array | string
  /** Encodes a data frame, reusing the payload's own frame when it came from `decode` of this codec. */
  readonly encodeData: (stream: number, payload: Uint8Array) => Uint8Array | string
  /** Decodes one frame. */
  readonly decode: (frame: Uint8Array | string) => Message
  /**
   * Takes back a frame `encodeData` returned once the carrier has handed it to the operating system, so that its
   * memory is reused for the next frame instead of being allocated (and page-faulted) afresh.
   */
  readonly recycle?: (frame: Uint8Array) => void
  /**
   * Packs several encoded frames into one frame that `unbatch` splits again: one WebSocket message, one header to
   * parse, instead of one per frame. Only sent to a peer that speaks `BATCH_REVISION`.
   */
  readonly batch?: (frames: ReadonlyArray<Uint8Array>) => Uint8Array
  /** The frames packed in `frame` if it is a batch (throws a "Protocol" `TransportError` on a malformed one), else undefined. */
  readonly unbatch?: (frame: Uint8Array) => ReadonlyArray<Uint8Array> | undefined
}
