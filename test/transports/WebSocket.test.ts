/**
 * The WebSocket carrier's upgrade handler on its own, as a server that dispatches upgrades by path uses it: only the
 * upgrades handed to it are taken, a client asking for no known subprotocol is refused, and closing its scope closes
 * what it accepted.
 */
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { WebSocket } from "ws"
import * as P from "../../core/Protocol.ts"
import { CLOSE_CODES } from "../../core/Transport.ts"
import type { Connection } from "../../core/Transport.ts"
import * as Msgpack from "../../transports/Msgpack.ts"
import * as Tcp from "../../transports/Tcp.ts"
import * as WebSocketCarrier from "../../transports/WebSocket.ts"
import * as Ws from "../../transports/Ws.ts"

/** A server handing the upgrades of `/in` to `handle` and refusing every other one with 404. */
const dispatching = (handle: WebSocketCarrier.UpgradeHandler) =>
  Effect.acquireRelease(
    Effect.async<Http.Server>((resume) => {
      const server = Http.createServer()
      server.on("upgrade", (request: Http.IncomingMessage, socket, head) => {
        if (request.url === "/in") return handle(request, socket, head)
        socket.end("HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
  ).pipe(Effect.map((server) => `ws://127.0.0.1:${(server.address() as AddressInfo).port}`))

/** Opens a client; resolves with it once open, or with the HTTP status the server refused it with. */
const open = (url: string, protocols: Array<string>) =>
  Effect.async<{ readonly ws?: WebSocket; readonly status?: number }>((resume) => {
    const ws = new WebSocket(url, protocols, { perMessageDeflate: false })
    ws.once("open", () => resume(Effect.succeed({ ws })))
    ws.once("unexpected-response", (_req, res) => {
      ws.terminate()
      resume(Effect.succeed({ status: res.statusCode! }))
    })
    ws.once("error", () => {})
  })

const closeOf = (ws: WebSocket) =>
  Effect.async<{ readonly code: number; readonly reason: string }>((resume) => {
    ws.once("close", (code, reason) => resume(Effect.succeed({ code, reason: reason.toString() })))
  })

describe("WebSocket.upgrades", () => {
  it.live("takes the upgrades handed to it for a known subprotocol, refuses the rest, and closes what it accepted with its scope", () =>
    Effect.gen(function*() {
      const accepted: Array<Connection> = []
      const scope = yield* Scope.make()
      const upgrades = yield* WebSocketCarrier.upgrades({ codecs: [Ws.codec, Msgpack.codec] }, (c) => accepted.push(c)).pipe(
        Scope.extend(scope)
      )
      const url = yield* dispatching(upgrades.handle)

      const json = yield* open(`${url}/in`, [Ws.codec.subprotocol])
      const binary = yield* open(`${url}/in`, ["nonsense", Msgpack.codec.subprotocol])
      expect(json.ws?.protocol).toBe(Ws.codec.subprotocol)
      expect(binary.ws?.protocol).toBe(Msgpack.codec.subprotocol)
      expect(accepted.map((c) => c.transport)).toEqual([Ws.codec.name, Msgpack.codec.name])

      expect(yield* open(`${url}/in`, ["nonsense"])).toEqual({ status: 400 })
      expect(yield* open(`${url}/elsewhere`, [Ws.codec.subprotocol])).toEqual({ status: 404 })
      expect(accepted).toHaveLength(2)

      const closed = Effect.all([closeOf(json.ws!), closeOf(binary.ws!)], { concurrency: 2 })
      yield* Scope.close(scope, Exit.void)
      expect(yield* closed).toEqual([
        { code: CLOSE_CODES.GoingAway, reason: "hub shutting down" },
        { code: CLOSE_CODES.GoingAway, reason: "hub shutting down" }
      ])
    }).pipe(Effect.scoped), 20_000)

  it.live("a message sent just before close reaches the peer before the close frame, batching on or off", () =>
    Effect.gen(function*() {
      for (const batching of [false, true]) {
        const upgrades = yield* WebSocketCarrier.upgrades({ codecs: [Msgpack.codec] }, (c) => {
          if (batching) c.enableBatching?.()
          // What the relay does to a peer that broke the protocol: the reason, then the close.
          c.send(new P.Error({ code: "Protocol", message: "bad frame" }))
          c.close(CLOSE_CODES.Protocol, "bad frame")
        })
        const url = yield* dispatching(upgrades.handle)
        const client = new WebSocket(`${url}/in`, [Msgpack.codec.subprotocol], { perMessageDeflate: false })
        const received: Array<string> = []
        client.on("message", (data: Buffer) => {
          const parts = Msgpack.codec.unbatch!(data) ?? [data]
          for (const part of parts) received.push(Msgpack.codec.decode(part)._tag)
        })
        const closed = yield* closeOf(client)
        expect({ batching, closed, received }).toEqual({
          batching,
          closed: { code: CLOSE_CODES.Protocol, reason: "bad frame" },
          received: ["Error"]
        })
      }
    }).pipe(Effect.scoped), 20_000)

  it.live("takes a tcp upgrade when msgpack is served (refused otherwise), and closes it with its scope", () =>
    Effect.gen(function*() {
      const accepted: Array<Connection> = []
      const scope = yield* Scope.make()
      const upgrades = yield* WebSocketCarrier.upgrades({ codecs: [Msgpack.codec] }, (c) => accepted.push(c)).pipe(
        Scope.extend(scope)
      )
      const url = yield* dispatching(upgrades.handle)
      const client = yield* Tcp.transport.dial(`${url}/in`)
      const closed = Effect.async<{ readonly code: number; readonly reason: string }>((resume) =>
        client.setHandler({ message: () => {}, close: (info) => resume(Effect.succeed(info)) })
      )
      expect(accepted.map((c) => c.transport)).toEqual(["tcp"])
      yield* Scope.close(scope, Exit.void)
      expect(yield* closed).toEqual({ code: CLOSE_CODES.GoingAway, reason: "hub shutting down" })

      const jsonOnly = yield* WebSocketCarrier.upgrades({ codecs: [Ws.codec] }, (c) => accepted.push(c))
      const other = yield* dispatching(jsonOnly.handle)
      const refused = yield* Effect.flip(Tcp.transport.dial(`${other}/in`))
      expect(refused.message).toContain("HTTP 400")
    }).pipe(Effect.scoped), 20_000)
})
