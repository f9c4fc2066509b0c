import * as Http from "node:http"
import { describe, expect, it } from "@effect/vitest"
import * as HttpServer from "@effect/platform/HttpServer"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as HubServer from "../../hub/http/HubServer.ts"
import * as Main from "../../hub/Main.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

/** Sends an upgrade request; resolves with the 101 response's first bytes, or the plain response's status. */
const upgrade = (port: number, path: string) =>
  Effect.promise(
    () =>
      new Promise<{ status: number; data: string }>((resolve, reject) => {
        const request = Http.request({ port, host: "127.0.0.1", path, headers: { Connection: "Upgrade", Upgrade: "test" } })
        request.on("upgrade", (response, socket, head) => {
          socket.destroy()
          resolve({ status: response.statusCode!, data: head.toString() })
        })
        request.on("response", (response) => {
          response.resume()
          resolve({ status: response.statusCode!, data: "" })
        })
        request.on("error", reject)
        request.end()
      })
  )

describe("HubLive", () => {
  it.live("serves /health on DATABASE_URL; a registered upgrade path gets its upgrades, any other is answered by the app", () =>
    Effect.gen(function*() {
      const url = yield* TestDatabase.makeTestDatabaseUrl
      const context = yield* Layer.build(
        Main.HubLive({ host: "127.0.0.1", port: 0, dataDir: "/nonexistent", databaseUrl: url })
      )
      const address = Context.get(context, HttpServer.HttpServer).address
      const port = address._tag === "TcpAddress" ? address.port : 0
      expect(port).toBeGreaterThan(0)

      const health = yield* Effect.promise(() => fetch(`http://127.0.0.1:${port}/health`))
      expect(health.status).toBe(200)
      expect(yield* Effect.promise(() => health.json())).toEqual({ status: "ok" })

      const upgrades = Context.get(context, HubServer.HubUpgrades)
      yield* upgrades.register("/test-upgrade", (_request, socket) => {
        socket.write("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\nhello")
      })
      expect(yield* upgrade(port, "/test-upgrade?x=1")).toEqual({ status: 101, data: "hello" })
      expect((yield* upgrade(port, "/elsewhere")).status).toBe(404)
      expect(Context.get(context, HubServer.HubHttpServer).listening).toBe(true)
    }).pipe(Effect.scoped), 60_000)
})
