/**
 * The syslog sinks: RFC 5424 messages to a server over TCP (`tcp://HOST:PORT`, RFC 6587) or TLS (`tls://HOST:PORT`,
 * RFC 5425), each in octet-counted framing. Writes wait for the socket to drain (backpressure) and a batch is accepted
 * when its last byte was handed to the kernel.
 *
 * Plain syslog has no acknowledgement: bytes the kernel took may die with a server that crashes before reading them.
 * So the sink keeps every record accepted since the last confirmation; a lost connection is reopened with backoff and
 * those records are sent again first (duplicates are the price; each record carries its event id). `confirm`
 * half-closes the connection and waits for the server to close it in turn, which a server does only once it has read
 * everything: then the kept records are delivered and dropped. When they pass `unconfirmedBytes` the sink confirms
 * on its own, so memory stays bounded.
 */
import { Duration, Effect, Either, Layer, Schedule } from "effect"
import type * as Tls from "node:tls"
import { Sink, SinkError } from "./Sink.ts"
import { frame } from "./Syslog.ts"
import { close, type Connection, open, send, sinkError, type SyslogTarget } from "./SyslogConnection.ts"

export type { SyslogTarget } from "./SyslogConnection.ts"

/** Options of a syslog sink. */
export interface SyslogSinkOptions {
  /** TLS settings for `tls://` (a private CA, a client certificate, `servername`); the system CAs by default. */
  readonly tls?: Tls.ConnectionOptions
  /** How long one connection attempt (and TLS handshake) may take (default 10 s). */
  readonly connectTimeout?: Duration.DurationInput
  /** How long one batch may take to be written before it fails with `Timeout`: a server that stopped reading (default 30 s). */
  readonly writeTimeout?: Duration.DurationInput
  /**
   * Retries after a refused or lost connection (default: 6, exponential from 200 ms with jitter, ~13 s in all). TLS
   * verification failures and timeouts are not retried: waiting does not fix them.
   */
  readonly reconnect?: Schedule.Schedule<unknown, SinkError>
  /**
   * How many bytes of accepted records may wait for a confirmation before a write confirms them first (default 8 MiB;
   * one reconnect per 8 MiB exported, and what is kept in memory at most).
   */
  readonly unconfirmedBytes?: number
}

/** Parses a syslog target URL; anything but `tcp://` or `tls://` with a host and a port is refused with a hint. */
export const parseTarget = (url: string): Either.Either<SyslogTarget, SinkError> => {
  // A user name or password typed into the URL is never echoed.
  const shown = url.replace(/\/\/[^@/]*@/, "//…@")
  const refuse = (why: string) =>
    Either.left(
      new SinkError({ reason: "Open", target: shown, message: `invalid syslog target ${shown}: ${why} (expected tcp://HOST:PORT or tls://HOST:PORT)` })
    )
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return refuse("not a URL")
  }
  const protocol = parsed.protocol.slice(0, -1)
  if (protocol !== "tcp" && protocol !== "tls") return refuse(`unsupported scheme ${parsed.protocol}`)
  if (parsed.hostname === "") return refuse("no host")
  const port = Number(parsed.port)
  if (parsed.port === "" || !Number.isInteger(port) || port < 1 || port > 65535) return refuse("no port")
  if (parsed.username !== "" || parsed.password !== "" || (parsed.pathname !== "" && parsed.pathname !== "/") || parsed.search !== "" || parsed.hash !== "") {
    return refuse("only a host and a port are allowed")
  }
  const host = parsed.hostname.startsWith("[") ? parsed.hostname.slice(1, -1) : parsed.hostname
  return Either.right({ protocol, host, port, url })
}

// Below this a batch is written as one chunk: fewer syscalls than one write per record, bounded memory per write.
const CHUNK_BYTES = 64 * 1024

const chunks = (frames: ReadonlyArray<Buffer>): Array<Buffer> => {
  const out: Array<Buffer> = []
  let pending: Array<Buffer> = []
  let size = 0
  for (const f of frames) {
    pending.push(f)
    size += f.length
    if (size >= CHUNK_BYTES) {
      out.push(Buffer.concat(pending, size))
      pending = []
      size = 0
    }
  }
  if (pending.length > 0) out.push(Buffer.concat(pending, size))
  return out
}

/**
 * A syslog sink for `tcp://HOST:PORT` or `tls://HOST:PORT`, connected before it is returned (a server that is down is
 * an error at once, after the reconnect retries) and closed gracefully with the scope.
 */
export const make = Effect.fn("SinkSyslog.make")(function*(url: string, options: SyslogSinkOptions = {}) {
  const target = yield* parseTarget(url)
  const connectTimeout = options.connectTimeout ?? Duration.seconds(10)
  const writeTimeout = Duration.decode(options.writeTimeout ?? Duration.seconds(30))
  const unconfirmedBytes = options.unconfirmedBytes ?? 8 * 1024 * 1024
  const retryable = (e: SinkError) => e.reason === "Connect" || e.reason === "Write"
  const reconnect = (options.reconnect ??
    Schedule.exponential(Duration.millis(200)).pipe(Schedule.jittered, Schedule.intersect(Schedule.recurs(6))))
    .pipe(Schedule.whileInput(retryable))
  const error = (reason: SinkError["reason"], message: string) => sinkError(target, reason, message)

  let current: Connection | undefined
  // Frames accepted since the last confirmation, oldest first: what a new connection sends again.
  let unconfirmed: Array<Buffer> = []
  let unconfirmedSize = 0

  /** Sends frames, on the open connection or on a new one that first gets every unconfirmed frame again. */
  const attempt = (frames: ReadonlyArray<Buffer>) =>
    Effect.gen(function*() {
      let replay: ReadonlyArray<Buffer> = []
      if (current === undefined || current.broken !== undefined) {
        current?.socket.destroy()
        current = undefined
        const connection = yield* open(target, options.tls, connectTimeout)
        if (unconfirmed.length > 0) {
          replay = unconfirmed
          yield* Effect.logWarning(`syslog ${url}: connected again, resending ${unconfirmed.length} unconfirmed records`)
        }
        current = connection
      }
      yield* send(target, current, chunks([...replay, ...frames])).pipe(
        Effect.timeoutFail({
          duration: writeTimeout,
          onTimeout: () => error("Timeout", `the server took nothing for ${Duration.format(writeTimeout)}: it stopped reading`)
        })
      )
      for (const f of frames) {
        unconfirmed.push(f)
        unconfirmedSize += f.length
      }
    })

  const confirmNow = Effect.gen(function*() {
    if (unconfirmed.length === 0) return
    if (current === undefined || current.broken !== undefined) yield* attempt([])
    const connection = current!
    current = undefined
    yield* close(target, connection, writeTimeout)
    unconfirmed = []
    unconfirmedSize = 0
  })

  const retried = <A>(effect: Effect.Effect<A, SinkError>) =>
    effect.pipe(
      Effect.tapError((e) => (retryable(e) ? Effect.logWarning(`${e.message}; retrying`) : Effect.void)),
      Effect.retry(reconnect)
    )

  yield* retried(attempt([]))
  const lock = yield* Effect.makeSemaphore(1)
  const confirm = lock.withPermits(1)(retried(confirmNow))
  yield* Effect.addFinalizer(() =>
    confirm.pipe(
      Effect.catchAll((e) => Effect.logError(`${e.message}; ${unconfirmed.length} records may not have been delivered`)),
      Effect.ensuring(Effect.sync(() => current?.socket.destroy()))
    )
  )

  return Sink.of({
    target: url,
    confirm,
    write: (records) =>
      lock.withPermits(1)(
        Effect.suspend(() => {
          if (records.length === 0) return Effect.void
          const frames = records.map(frame)
          return retried(attempt(frames)).pipe(
            Effect.zipRight(Effect.suspend(() => (unconfirmedSize > unconfirmedBytes ? retried(confirmNow) : Effect.void)))
          )
        })
      )
  })
})

/** The syslog sink as the `Sink` service, connected when the layer is built and closed with it. */
export const layer = (url: string, options: SyslogSinkOptions = {}): Layer.Layer<Sink, SinkError> =>
  Layer.scoped(Sink, make(url, options))
