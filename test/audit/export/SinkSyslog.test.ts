/**
 * The syslog sinks against real TCP and TLS servers on loopback: octet-counted frames arrive in order, a server that
 * stops reading holds a write back (and times it out), a server that is down is a clear error, a lost connection is
 * reopened and the recent records sent again, and TLS verifies the server's certificate.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Either, Schedule } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Tls from "node:tls"
import { SinkError } from "../../../audit/export/Sink.ts"
import { make, parseTarget } from "../../../audit/export/SinkSyslog.ts"
import { unframe } from "./Parsers.ts"

/** A syslog server on loopback that keeps every byte of every connection. */
interface Server {
  readonly port: number
  /** Bytes received, per connection in the order they were accepted. */
  readonly connections: Array<{ socket: Net.Socket; bytes: Array<Buffer> }>
  /** Every message received so far, across connections. */
  readonly messages: () => Array<string>
  /** Closes every connection (the server keeps listening). */
  readonly dropConnections: () => void
  /** Closes every connection and stops listening. */
  readonly stop: Effect.Effect<void>
}

/** The complete octet-counted frames of what arrived so far (a frame may still be on its way). */
const complete = (bytes: Buffer): Array<string> => {
  let end = 0
  for (;;) {
    const space = bytes.indexOf(0x20, end)
    if (space < 0) break
    const next = space + 1 + Number(bytes.subarray(end, space).toString("latin1"))
    if (next > bytes.length) break
    end = next
  }
  return unframe(bytes.subarray(0, end))
}

const listen = (server: Net.Server, port = 0) =>
  new Promise<number>((resolve, reject) => {
    server.once("error", reject)
    server.listen(port, "127.0.0.1", () => resolve((server.address() as Net.AddressInfo).port))
  })

/** Starts a server for the scope; `tls` makes it a TLS server, `paused` accepts but does not read. */
const server = (options: { readonly tls?: Tls.TlsOptions; readonly paused?: boolean; readonly port?: number } = {}) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const connections: Server["connections"] = []
      const onSocket = (socket: Net.Socket) => {
        const entry = { socket, bytes: [] as Array<Buffer> }
        connections.push(entry)
        socket.on("error", () => {})
        if (options.paused) socket.pause()
        socket.on("data", (chunk: Buffer) => entry.bytes.push(chunk))
      }
      const net = options.tls ? Tls.createServer(options.tls, onSocket) : Net.createServer(onSocket)
      const port = await listen(net, options.port)
      const dropConnections = () => connections.forEach((c) => c.socket.destroy())
      const stop = Effect.promise(() =>
        new Promise<void>((resolve) => {
          dropConnections()
          if (!net.listening) return resolve()
          net.close(() => resolve())
        })
      )
      const result: Server = {
        port,
        connections,
        messages: () => connections.flatMap((c) => complete(Buffer.concat(c.bytes))),
        dropConnections,
        stop
      }
      return result
    }),
    (s) => s.stop
  )

/** Waits (at most 10 s) until `condition` holds. */
const eventually = (condition: () => boolean, what: string) =>
  Effect.gen(function*() {
    const deadline = Date.now() + 10_000
    while (!condition()) {
      if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out waiting for ${what}`))
      yield* Effect.sleep(Duration.millis(20))
    }
  })

const freePort = Effect.promise(async () => {
  const probe = Net.createServer()
  const port = await listen(probe)
  await new Promise((resolve) => probe.close(resolve))
  return port
})

const quick = Schedule.spaced(Duration.millis(50)).pipe(Schedule.intersect(Schedule.recurs(2)))
const records = (name: string, n: number) => Array.from({ length: n }, (_, i) => `<110>1 - - connect - ${name} - ${i}`)

describe("syslog target URLs", () => {
  it("takes tcp:// and tls:// with a host and a port, IPv6 in brackets", () => {
    assert.deepStrictEqual(Either.getOrThrow(parseTarget("tcp://127.0.0.1:514")), {
      protocol: "tcp",
      host: "127.0.0.1",
      port: 514,
      url: "tcp://127.0.0.1:514"
    })
    assert.strictEqual(Either.getOrThrow(parseTarget("tls://[::1]:6514")).host, "::1")
    assert.strictEqual(Either.getOrThrow(parseTarget("tls://logs.example.com:6514")).protocol, "tls")
  })

  it("refuses anything else with a hint", () => {
    for (const url of ["udp://h:514", "tcp://h", "tcp://h:0", "tcp://h:70000", "tcp://:514", "tcp://u@h:514", "tcp://h:514/x", "h:514", "nonsense"]) {
      const error = Either.getLeft(parseTarget(url))
      assert.isTrue(error._tag === "Some" && error.value instanceof SinkError, url)
      if (error._tag === "Some") assert.include(error.value.message, "expected tcp://HOST:PORT or tls://HOST:PORT")
    }
  })
})

describe("syslog sink over TCP", () => {
  it.scopedLive("frames every record with its octet count, in order, across batches", () =>
    Effect.gen(function*() {
      const s = yield* server()
      const sink = yield* make(`tcp://127.0.0.1:${s.port}`)
      const sent = [...records("a", 500), "<110>1 - - connect - b - héllo ☃ \"]|=", ...records("c", 3)]
      yield* sink.write(sent.slice(0, 500))
      yield* sink.write(sent.slice(500))
      yield* eventually(() => s.messages().length >= sent.length, "every message")
      assert.deepStrictEqual(s.messages(), sent)
      assert.strictEqual(s.connections.length, 1)
    }))

  it.scopedLive("waits while the server does not read, and is accepted once it drains", () =>
    Effect.gen(function*() {
      const s = yield* server({ paused: true })
      const sink = yield* make(`tcp://127.0.0.1:${s.port}`)
      // 16 MB: far more than the kernel's socket buffers, so the sink must wait for the server.
      const big = records("x", 16_000).map((r) => r.padEnd(1000, "."))
      const fiber = yield* Effect.fork(sink.write(big))
      yield* Effect.sleep(Duration.millis(500))
      assert.isNull(fiber.unsafePoll(), "the write is not accepted while the server is not reading")
      yield* eventually(() => s.connections.length === 1, "a connection")
      s.connections[0]!.socket.resume()
      yield* fiber.await
      yield* eventually(() => s.messages().length === big.length, "every message")
      assert.deepStrictEqual(s.messages(), big)
    }))

  it.scopedLive("a server that stops reading fails the write with Timeout", () =>
    Effect.gen(function*() {
      const s = yield* server({ paused: true })
      const sink = yield* make(`tcp://127.0.0.1:${s.port}`, { writeTimeout: Duration.millis(500) })
      const error = yield* Effect.flip(sink.write(records("x", 16_000).map((r) => r.padEnd(1000, "."))))
      assert.strictEqual(error.reason, "Timeout")
      assert.include(error.message, "stopped reading")
    }))

  it.scopedLive("a server that is down is a Connect error naming it, after the retries", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const started = Date.now()
      const error = yield* Effect.flip(make(`tcp://127.0.0.1:${port}`, { reconnect: quick }))
      assert.strictEqual(error.reason, "Connect")
      assert.strictEqual(error.target, `tcp://127.0.0.1:${port}`)
      assert.include(error.message, `syslog tcp://127.0.0.1:${port}: cannot connect: connection refused`)
      assert.include(error.message, "ECONNREFUSED")
      assert.isBelow(Date.now() - started, 10_000, "three quick attempts, not the default backoff")
    }))

  it.scopedLive("a dropped connection is reopened and every unconfirmed record sent again before the new ones", () =>
    Effect.gen(function*() {
      const s = yield* server()
      const sink = yield* make(`tcp://127.0.0.1:${s.port}`, { reconnect: quick })
      yield* sink.write(records("a", 10))
      yield* eventually(() => s.messages().length === 10, "the first batch")
      s.dropConnections()
      yield* eventually(() => s.connections[0]!.socket.destroyed, "the drop")
      yield* Effect.sleep(Duration.millis(100))
      yield* sink.write(records("b", 5))
      yield* eventually(() => s.connections.length === 2 && complete(Buffer.concat(s.connections[1]!.bytes)).length === 15, "the second connection")
      assert.deepStrictEqual(complete(Buffer.concat(s.connections[1]!.bytes)), [...records("a", 10), ...records("b", 5)])
    }))

  it.scopedLive("confirm returns once the server closed after reading everything; confirmed records are not sent again", () =>
    Effect.gen(function*() {
      const s = yield* server()
      const sink = yield* make(`tcp://127.0.0.1:${s.port}`, { reconnect: quick })
      yield* sink.write(records("a", 10))
      yield* sink.confirm
      // The server read to the end before it closed: no waiting needed.
      assert.deepStrictEqual(s.messages(), records("a", 10))
      assert.isTrue(s.connections[0]!.socket.destroyed)
      yield* sink.write(records("b", 5))
      yield* eventually(() => s.connections.length === 2 && complete(Buffer.concat(s.connections[1]!.bytes)).length === 5, "the batch")
      assert.deepStrictEqual(complete(Buffer.concat(s.connections[1]!.bytes)), records("b", 5))
    }))

  it.scopedLive("what a dead server's kernel took is delivered to the server that comes back, by confirm", () =>
    Effect.gen(function*() {
      const first = yield* server()
      const port = first.port
      const sink = yield* make(`tcp://127.0.0.1:${port}`, {
        reconnect: Schedule.spaced(Duration.millis(200)).pipe(Schedule.intersect(Schedule.recurs(25)))
      })
      yield* sink.write(records("a", 20))
      yield* eventually(() => first.messages().length === 20, "the first batch")
      yield* first.stop
      // Accepted by a kernel whose server is gone, or refused and retried until the server is back: either way...
      const write = yield* Effect.fork(Effect.zipRight(sink.write(records("b", 3)), sink.confirm))
      yield* Effect.sleep(Duration.millis(600))
      const second = yield* server({ port })
      const exit = yield* write.await
      assert.strictEqual(exit._tag, "Success")
      // ...once confirmed, the new server has every record not confirmed before, in order.
      assert.deepStrictEqual(second.messages(), [...records("a", 20), ...records("b", 3)])
    }))

  it.scopedLive("past unconfirmedBytes a write confirms first, so what is kept stays bounded", () =>
    Effect.gen(function*() {
      const s = yield* server()
      const sink = yield* make(`tcp://127.0.0.1:${s.port}`, { reconnect: quick, unconfirmedBytes: 200 })
      yield* sink.write(records("a", 20))
      assert.deepStrictEqual(s.messages(), records("a", 20))
      assert.isTrue(s.connections[0]!.socket.destroyed, "confirmed by closing")
      s.dropConnections()
      yield* sink.write(records("b", 3))
      yield* eventually(() => s.connections.length === 2 && complete(Buffer.concat(s.connections[1]!.bytes)).length === 3, "the batch")
      assert.deepStrictEqual(complete(Buffer.concat(s.connections[1]!.bytes)), records("b", 3))
    }))
})

/** A self-signed certificate for 127.0.0.1 and localhost, made with openssl in a temporary directory. */
const certificate = () => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-tls-"))
  ChildProcess.execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
    "-subj", "/CN=connect test syslog", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
    "-keyout", Path.join(dir, "key.pem"), "-out", Path.join(dir, "cert.pem")
  ], { stdio: "ignore", timeout: 20_000 })
  const pair = { key: Fs.readFileSync(Path.join(dir, "key.pem")), cert: Fs.readFileSync(Path.join(dir, "cert.pem")) }
  Fs.rmSync(dir, { recursive: true, force: true })
  return pair
}

describe("syslog sink over TLS", () => {
  const { key, cert } = certificate()

  it.scopedLive("sends octet-counted frames to a server whose certificate it trusts", () =>
    Effect.gen(function*() {
      const s = yield* server({ tls: { key, cert } })
      const sink = yield* make(`tls://127.0.0.1:${s.port}`, { tls: { ca: cert } })
      yield* sink.write(records("t", 200))
      yield* eventually(() => s.messages().length === 200, "every message")
      assert.deepStrictEqual(s.messages(), records("t", 200))
    }))

  it.scopedLive("checks the host name against the certificate", () =>
    Effect.gen(function*() {
      const s = yield* server({ tls: { key, cert } })
      const sink = yield* make(`tls://localhost:${s.port}`, { tls: { ca: cert } })
      yield* sink.write(["<110>1 - - connect - - - by name"])
      yield* eventually(() => s.messages().length === 1, "the message")
    }))

  it.scopedLive("refuses a certificate it does not trust, at once and without retrying", () =>
    Effect.gen(function*() {
      const s = yield* server({ tls: { key, cert } })
      const started = Date.now()
      const error = yield* Effect.flip(make(`tls://127.0.0.1:${s.port}`))
      assert.strictEqual(error.reason, "Tls")
      assert.include(error.message, "TLS handshake failed")
      assert.strictEqual(s.connections.length <= 1, true, "no retry")
      assert.isBelow(Date.now() - started, 10_000)
    }))
})
