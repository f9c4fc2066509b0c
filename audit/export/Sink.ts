/**
 * Where exported records go: the contract every sink keeps (stdout, a file, syslog over TCP or TLS). A sink accepts a
 * batch only once every record of it is written and flushed, so the exporter may move its cursor past a batch when,
 * and only when, `write` succeeded. Where flushed is not yet delivered (a socket: the kernel took the bytes, the
 * server may still die before reading them), `confirm` waits for delivery and sends again what was lost.
 */
import { Context, type Effect, Schema } from "effect"

/** A sink could not take records; `target` names it as the user gave it (a path, `stdout`, `tcp://host:port`). */
export class SinkError extends Schema.TaggedError<SinkError>()("SinkError", {
  reason: Schema.Literal("Open", "Connect", "Tls", "Write", "Timeout"),
  target: Schema.String,
  message: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {}

/** A destination for export records. */
export class Sink extends Context.Tag("connect/audit/export/Sink")<
  Sink,
  {
    /** What the sink writes to, as the user named it. */
    readonly target: string
    /**
     * Writes records in order, each framed as the sink frames records (a line; an octet-counted syslog frame), and
     * succeeds once all are accepted: written and flushed (fsync'd for a file, handed to the kernel for a socket).
     * Concurrent calls are serialized; a failed call may have written part of the batch, so the caller resends it
     * (at least once: records carry their event id for deduplication).
     */
    readonly write: (records: ReadonlyArray<string>) => Effect.Effect<void, SinkError>
    /**
     * Succeeds once every accepted record is known to be delivered: at once for a file (fsync'd) or stdout (nothing
     * more can be known); for syslog when the server, after the sink half-closed the connection, closed it in turn
     * (it does so only after reading everything), records of a connection that died being sent again on a new one.
     */
    readonly confirm: Effect.Effect<void, SinkError>
  }
>() {}
