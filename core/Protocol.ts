/**
 * The relay wire protocol: every message an agent and the hub exchange on one connection, as Schema tagged classes.
 *
 * Streams are numbered per connection: the side that opens a stream picks its id, agents use odd ids and the hub
 * even ids (as in HTTP/2), so both ends can open streams without a round trip. The hub rewrites ids between the two
 * agent connections of a tunnel and otherwise forwards `Data`, `Credit`, `End` and `Reset` unchanged.
 */
import { Schema } from "effect"

/** Version of this protocol; a hub refuses a `Hello` with another major version. */
export const PROTOCOL_VERSION = 1

/**
 * Revision of this protocol within `PROTOCOL_VERSION`: what a build adds that its peer may not know, negotiated in
 * `Hello`/`Welcome` (each side uses the lower of the two, an absent field being revision 0), so that a hub and agents
 * one build apart still work together. Revision 1 (`BATCH_REVISION`) adds batch frames.
 */
export const PROTOCOL_REVISION = 1

/** The revision from which a peer reads batch frames (several frames in one WebSocket message; transports/Msgpack.ts). */
export const BATCH_REVISION = 1

/** The revision two peers speak together: the lower of theirs (a peer that sent none speaks revision 0). */
export const negotiateRevision = (mine: number, theirs: number | undefined): number =>
  Math.max(0, Math.min(mine, theirs ?? 0))

/**
 * Bytes a sender may have in flight on one stream before it must wait for `Credit`.
 *
 * Window = bandwidth × credit round trip. The loop is agent → hub → agent → TCP write → Credit back through the
 * hub: four processes and four loopback hops, each a scheduler wake-up. It measured 0.5 ms on an idle machine but
 * 2–4 ms on a busy 2-core one (the relay is then CPU-bound and every hop waits for a core), so 1 GB/s needs
 * 2–4 MiB; with 512 KiB the sender moved in lock-step at ~30–60 MB/s. The hub holds at most this much per busy
 * stream (only when the far reader is slower than the sender), and an idle stream costs nothing.
 */
export const STREAM_WINDOW = 4 * 1024 * 1024

/**
 * Bytes of `Data` an agent may have handed to the hub, over all its streams, that the hub has not yet passed on (as
 * HTTP/2's connection window, but between agent and hub only): without it an agent with 1,024 streams could make the
 * hub hold 1,024 × `STREAM_WINDOW` = 4 GiB for readers that do not read. The hub gives it back with `Window` once it
 * has written the bytes towards their receiver (or dropped them), not when the far reader credits them, so streams
 * whose readers never credit (which hold only their own stream window, at the reader) cannot starve the connection.
 * Four stream windows: one saturated stream runs at full speed with room to spare. The hub closes a connection that
 * exceeds it with a protocol error.
 */
export const CONNECTION_WINDOW = 4 * STREAM_WINDOW

/** Bytes the hub gives back with one `Window` (a sixteenth of `CONNECTION_WINDOW`). */
export const WINDOW_GRANT = CONNECTION_WINDOW / 16

/** Largest `Data` payload a sender puts in one frame (Node reads TCP in 64 KiB chunks, so one read is one frame). */
export const MAX_CHUNK = 64 * 1024

/** Largest encoded frame any transport accepts; bigger frames close the connection with a protocol error. */
export const MAX_FRAME = 1024 * 1024

/** A stream id on one connection (u32; odd when opened by an agent, even when opened by the hub). */
export const StreamId = Schema.Number.pipe(Schema.int(), Schema.between(1, 0xffff_ffff))

/** A request id correlating `Expose`/`Unexpose`/`Reach`/`Check` (and the hub's `Probe`) with the message that answers it. */
export const RequestId = Schema.Number.pipe(Schema.int(), Schema.nonNegative())

/** First message of an agent: who it is (token), which protocol and transport it speaks. */
export class Hello extends Schema.TaggedClass<Hello>()("Hello", {
  /** Protocol version the agent speaks (see `PROTOCOL_VERSION`). */
  protocol: Schema.Number,
  /** Agent token (64 hex chars); the hub stores only its SHA-256. */
  token: Schema.String,
  /** Name of the transport plugin the agent dialed with ("ws", "msgpack", ...). */
  transport: Schema.String,
  /** Version of the agent software, for the audit log. */
  agentVersion: Schema.String,
  /** Human label of the agent (host name), for the audit log. */
  label: Schema.optional(Schema.String),
  /** Protocol revision the agent speaks (see `PROTOCOL_REVISION`; absent from agents before revision 1). */
  revision: Schema.optional(Schema.Number.pipe(Schema.int(), Schema.nonNegative()))
}) {}

/** The hub's answer to an accepted `Hello`: the agent's identity and a warning when its token expires soon. */
export class Welcome extends Schema.TaggedClass<Welcome>()("Welcome", {
  /** Id of the authenticated agent. */
  agentId: Schema.String,
  /** Workspace the agent belongs to. */
  workspaceId: Schema.String,
  /** Protocol version the hub speaks. */
  protocol: Schema.Number,
  /** Interval at which the hub expects traffic or a `Ping`, in milliseconds. */
  heartbeatMs: Schema.Number,
  /** ISO time at which the agent's token expires, sent when that is near (DESIGN: 7 days before). */
  tokenExpiresAt: Schema.optional(Schema.String),
  /** The protocol revision both sides speak from now on: the lower of the agent's and the hub's (absent: 0). */
  revision: Schema.optional(Schema.Number.pipe(Schema.int(), Schema.nonNegative()))
}) {}

/** Agent → hub: publish a local target under a service name. */
export class Expose extends Schema.TaggedClass<Expose>()("Expose", {
  request: RequestId,
  /** Service name, unique in the workspace. */
  name: Schema.String,
  /** Host the exposing agent connects to (as seen from that agent). */
  host: Schema.String,
  /** TCP port of the target. */
  port: Schema.Number.pipe(Schema.int(), Schema.between(1, 65535))
}) {}

/** Agent → hub: withdraw a service name. */
export class Unexpose extends Schema.TaggedClass<Unexpose>()("Unexpose", {
  request: RequestId,
  name: Schema.String
}) {}

/** Agent → hub: ask whether a service can be reached (a local listener is about to be bound for it). */
export class Reach extends Schema.TaggedClass<Reach>()("Reach", {
  request: RequestId,
  name: Schema.String
}) {}

/** One step of a service check: whether it succeeded, how long it took (ms) and what was found. */
export const CheckStep = Schema.Struct({
  ok: Schema.Boolean,
  ms: Schema.Number,
  detail: Schema.String
})

/** A service check as run by the exposing agent against its own target (see `agent/Check.ts`). */
export const CheckReport = Schema.Struct({
  host: Schema.String,
  port: Schema.Number,
  dns: CheckStep,
  tcp: CheckStep,
  /** Informational: a plain TCP service is "not TLS", never a failure. */
  tls: CheckStep,
  /** Informational: a service that does not speak HTTP is "not HTTP", never a failure. */
  http: CheckStep,
  /** True when DNS and TCP succeeded. */
  ok: Schema.Boolean,
  /** Time the probe took on the exposing agent, in ms. */
  elapsedMs: Schema.Number
})

/** A service check report. */
export type CheckReport = typeof CheckReport.Type

/** Agent → hub: check a service from the exposing agent's side (resolved and audited like a `Reach`). */
export class Check extends Schema.TaggedClass<Check>()("Check", {
  request: RequestId,
  name: Schema.String
}) {}

/** Hub → exposing agent: probe the target of `service` and answer with a `ProbeResult` of the same request id. */
export class Probe extends Schema.TaggedClass<Probe>()("Probe", {
  request: RequestId,
  service: Schema.String
}) {}

/** Exposing agent → hub: the result of a `Probe`. */
export class ProbeResult extends Schema.TaggedClass<ProbeResult>()("ProbeResult", {
  request: RequestId,
  report: CheckReport
}) {}

/** Hub → checking agent: the exposing agent's report for its `Check`. */
export class CheckResult extends Schema.TaggedClass<CheckResult>()("CheckResult", {
  request: RequestId,
  report: CheckReport
}) {}

/** Hub → agent: the request with this id succeeded. */
export class Ack extends Schema.TaggedClass<Ack>()("Ack", {
  request: RequestId
}) {}

/**
 * Open a stream: agent → hub asks for a tunnel to `service`; hub → exposing agent asks it to connect its target.
 * The opener may send `Data` right after `Open` (within `STREAM_WINDOW`), so a client that speaks first loses nothing.
 */
export class Open extends Schema.TaggedClass<Open>()("Open", {
  stream: StreamId,
  service: Schema.String
}) {}

/** The exposing agent connected its target; forwarded to the opener. */
export class Opened extends Schema.TaggedClass<Opened>()("Opened", {
  stream: StreamId
}) {}

/** Stream bytes; never larger than `MAX_CHUNK`, never more than the sender's credit. */
export class Data extends Schema.TaggedClass<Data>()("Data", {
  stream: StreamId,
  payload: Schema.Uint8ArrayFromSelf
}) {}

/**
 * The receiver's TCP socket accepted `bytes` more bytes of this stream: the sender may send that many more. Valid
 * only in 1..`STREAM_WINDOW` and only up to the bytes actually outstanding on the stream; the hub treats anything
 * else as a protocol violation, since a credit beyond what was sent would switch the window off.
 */
export class Credit extends Schema.TaggedClass<Credit>()("Credit", {
  stream: StreamId,
  bytes: Schema.Number.pipe(Schema.int(), Schema.between(1, STREAM_WINDOW))
}) {}

/**
 * Hub → agent: the hub passed on (or dropped) `bytes` more of this connection's `Data`, so the agent may hand it that
 * many more (see `CONNECTION_WINDOW`). Sent once `WINDOW_GRANT` bytes are owed: one frame per MiB moved, none on a
 * small-message connection until it has moved a MiB (its 16 MiB window never runs dry before that).
 */
export class Window extends Schema.TaggedClass<Window>()("Window", {
  bytes: Schema.Number.pipe(Schema.int(), Schema.between(1, CONNECTION_WINDOW))
}) {}

/** The sender's side of the stream reached EOF (TCP shutdown(WR)); the other direction stays open. */
export class End extends Schema.TaggedClass<End>()("End", {
  stream: StreamId
}) {}

/** The stream failed or was aborted; both directions are gone and the receiver resets its socket. */
export class Reset extends Schema.TaggedClass<Reset>()("Reset", {
  stream: StreamId,
  /** Short machine-readable cause ("ECONNREFUSED", "ECONNRESET", "AgentDisconnected", ...). */
  reason: Schema.String
}) {}

/** Liveness probe; the receiver answers with a `Pong` carrying the same nonce. */
export class Ping extends Schema.TaggedClass<Ping>()("Ping", {
  nonce: Schema.Number
}) {}

/** Answer to a `Ping`. */
export class Pong extends Schema.TaggedClass<Pong>()("Pong", {
  nonce: Schema.Number
}) {}

/**
 * A refusal: of a request (with `request`), of a stream (with `stream`, e.g. "ServiceNotFound" — the opener resets
 * its socket), or of the whole connection (neither; the sender closes the connection after it).
 */
export class Error extends Schema.TaggedClass<Error>()("Error", {
  /** Stable code ("Unauthorized", "ServiceNotFound", "Forbidden", "Unavailable", "Protocol", ...). */
  code: Schema.String,
  /** Human-readable explanation. */
  message: Schema.String,
  stream: Schema.optional(StreamId),
  request: Schema.optional(RequestId)
}) {}

/** Every message of the protocol. */
export const Message = Schema.Union(
  Hello,
  Welcome,
  Expose,
  Unexpose,
  Reach,
  Check,
  Probe,
  ProbeResult,
  CheckResult,
  Ack,
  Open,
  Opened,
  Data,
  Credit,
  Window,
  End,
  Reset,
  Ping,
  Pong,
  Error
)

/** Any protocol message. */
export type Message = typeof Message.Type

/** The tag of a protocol message. */
export type MessageTag = Message["_tag"]
