/**
 * A socket pair as the connection of node's HTTP client, as the link proxy's pool uses it: a kept-alive connection
 * carries request after request without gathering anything per request.
 */
import * as Http from "node:http"
import type * as Net from "node:net"
import { describe, expect, it } from "vitest"
import * as SocketPair from "../../../hub/relay/SocketPair.ts"

describe("SocketPair", () => {
  it("carries 200 requests with an idle timeout each on one kept-alive connection, holding no listener per request", async () => {
    const server = Http.createServer((request, response) => {
      request.resume()
      request.on("end", () => response.end("ok"))
    })
    const made: Array<SocketPair.PairSocket> = []
    const agent = new Http.Agent({ keepAlive: true, maxSockets: 1 })
    ;(agent as unknown as { createConnection: () => Net.Socket }).createConnection = () => {
      const [client, far] = SocketPair.make("service")
      server.emit("connection", far)
      made.push(client)
      return client as unknown as Net.Socket
    }
    const get = () =>
      new Promise<string>((resolve, reject) => {
        const request = Http.request({ agent, path: "/x", host: "service" }, (response) => {
          let body = ""
          response.on("data", (c: Buffer) => (body += c.toString()))
          response.on("end", () => resolve(body))
        })
        // What the link proxy does for every request it forwards.
        request.setTimeout(60_000, () => request.destroy(new Error("idle")))
        request.on("error", reject)
        request.end()
      })
    for (let i = 0; i < 200; i++) expect(await get()).toBe("ok")
    expect(made).toHaveLength(1)
    expect(made[0]!.listenerCount("timeout")).toBeLessThan(5)
    agent.destroy()
    server.close()
  })
})
