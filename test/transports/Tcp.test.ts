/**
 * The `tcp` plugin under TLS: a `wss://` hub (a real TLS server on 127.0.0.1 with an `openssl`-made private CA)
 * serving the carrier's upgrades is dialed and carries messages when the CA is given, and is refused without it —
 * the same verification as the WebSocket plugins (HubTls.test.ts).
 */
import * as Fs from "node:fs"
import * as Https from "node:https"
import type * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { Effect, Either, Exit, Scope } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as P from "../../core/Protocol.ts"
import type { Connection } from "../../core/Transport.ts"
import * as Msgpack from "../../transports/Msgpack.ts"
import * as Tcp from "../../transports/Tcp.ts"
import * as WebSocketCarrier from "../../transports/WebSocket.ts"
import * as PrivateCa from "../support/PrivateCa.ts"

let dir: string
let ca: PrivateCa.PrivateCa
let server: Https.Server
let scope: Scope.CloseableScope
let url: string

beforeAll(async () => {
  dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-tcp-tls-"))
  ca = PrivateCa.make(dir)
  server = Https.createServer({ cert: Fs.readFileSync(ca.serverCert), key: Fs.readFileSync(ca.serverKey) })
  scope = Effect.runSync(Scope.make())
  // An echo server end: every message goes back as it came.
  const upgrades = await Effect.runPromise(
    WebSocketCarrier.upgrades({ codecs: [Msgpack.codec] }, (connection: Connection) =>
      connection.setHandler({ message: (m) => connection.send(m), close: () => {} })).pipe(Scope.extend(scope))
  )
  server.on("upgrade", upgrades.handle)
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  url = `wss://127.0.0.1:${(server.address() as Net.AddressInfo).port}/v1/agent`
}, 60_000)

afterAll(async () => {
  await Effect.runPromise(Scope.close(scope, Exit.void))
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  Fs.rmSync(dir, { recursive: true, force: true })
})

/** Dials with `caFile` trusted (or the system's CAs only) and sends a Ping: the answer, or why the dial failed. */
const ping = (caFile: string | undefined) =>
  Effect.runPromise(
    Effect.scoped(
      Effect.gen(function*() {
        const connection = yield* Tcp.transport.dial(url, caFile === undefined ? {} : { ca: [Fs.readFileSync(caFile, "utf8")] })
        const answer = Effect.async<P.Message>((resume) =>
          connection.setHandler({ message: (m) => resume(Effect.succeed(m)), close: () => {} })
        )
        connection.send(new P.Ping({ nonce: 7 }))
        return yield* answer
      })
    ).pipe(Effect.either, Effect.timeout("10 seconds"))
  )

describe("tcp transport over TLS", () => {
  it("carries messages to a wss:// hub whose CA it is given, and refuses it without that CA or with another", async () => {
    const trusted = await ping(ca.caCert)
    expect(Either.getOrThrow(trusted)).toEqual(new P.Ping({ nonce: 7 }))
    for (const caFile of [undefined, ca.otherCaCert]) {
      const refused = await ping(caFile)
      expect(Either.isLeft(refused) && refused.left.reason).toBe("Open")
    }
  }, 30_000)
})
