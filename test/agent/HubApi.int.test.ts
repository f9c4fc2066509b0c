import * as Http from "node:http"
import * as Net from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import * as HubApi from "../../agent/HubApi.ts"
import * as Hub from "../support/Hub.ts"

/** A port nothing listens on (bound, then released). */
const closedPort = Effect.promise(() =>
  new Promise<number>((resolve) => {
    const server = Net.createServer().listen(0, "127.0.0.1", () => {
      const port = (server.address() as Net.AddressInfo).port
      server.close(() => resolve(port))
    })
  })
)

/** An HTTP server answering every request with `status` and `body` (a proxy in front of the hub, say). */
const answering = (status: number, body: string) =>
  Effect.acquireRelease(
    Effect.promise(() =>
      new Promise<Http.Server>((resolve) => {
        const server = Http.createServer((_req, res) => res.writeHead(status, { "content-type": "application/json" }).end(body))
        server.listen(0, "127.0.0.1", () => resolve(server))
      })
    ),
    (server) => Effect.promise(() => new Promise<void>((resolve) => server.close(() => resolve())))
  ).pipe(Effect.map((server) => `http://127.0.0.1:${(server.address() as Net.AddressInfo).port}`))

describe("the agent's client of the hub API", () => {
  it.scopedLive("provisions, lists services and rotates against a real hub; refusals carry the hub's code, status and message", () =>
    Effect.gen(function*() {
      const hub = yield* Hub.start()
      const { workspaceId, apiKey } = yield* hub.workspace("one")

      const provisioned = yield* HubApi.provision(hub.httpUrl, apiKey, "laptop")
      expect(provisioned).toEqual({
        agentId: expect.any(String),
        workspaceId,
        token: expect.stringMatching(/^[0-9a-f]{64}$/),
        expiresAt: expect.any(String)
      })
      expect(yield* HubApi.services(hub.httpUrl, provisioned.token)).toEqual([])
      const rotated = yield* HubApi.rotate(hub.httpUrl, provisioned.token)
      expect(rotated.token).not.toBe(provisioned.token)
      expect(Date.parse(rotated.oldValidUntil)).toBeGreaterThan(Date.now())

      expect(yield* Effect.flip(HubApi.provision(hub.httpUrl, `pc_${"x".repeat(40)}`))).toMatchObject({
        _tag: "HubApiError",
        reason: "Refused",
        status: 401,
        code: "Unauthorized",
        message: "POST /v1/agents: unknown API key"
      })
      expect(yield* Effect.flip(HubApi.rotate(hub.httpUrl, apiKey))).toMatchObject({
        reason: "Refused",
        status: 403,
        code: "Forbidden",
        message: "POST /v1/agents/rotate: rotate with the agent's own token"
      })
      // A label the API's rule refuses is not sent: the hub records nothing.
      const before = (yield* hub.events).length
      expect(yield* Effect.flip(HubApi.provision(hub.httpUrl, apiKey, "a\u0000b"))).toMatchObject({
        reason: "Invalid",
        message: "POST /v1/agents: label must not contain U+0000 or an unpaired surrogate"
      })
      expect((yield* hub.events).length).toBe(before)
    }), 60_000)

  it.scopedLive("reports a hub that does not answer, an error status the API does not declare, and an answer that is not the API's", () =>
    Effect.gen(function*() {
      const port = yield* closedPort
      const down = yield* Effect.exit(HubApi.services(`http://127.0.0.1:${port}`, "0".repeat(64)))
      expect(down).toEqual(Exit.fail(expect.objectContaining({
        reason: "Unreachable",
        message: `cannot reach the hub at http://127.0.0.1:${port}: ECONNREFUSED`
      })))

      const proxy = yield* answering(502, JSON.stringify({ error: { code: "BadGateway", message: "upstream down" } }))
      expect(yield* Effect.flip(HubApi.services(proxy, "0".repeat(64)))).toMatchObject({
        reason: "Refused",
        status: 502,
        code: "BadGateway",
        message: "GET /v1/services: upstream down"
      })

      const other = yield* answering(200, JSON.stringify({ hello: "world" }))
      expect(yield* Effect.flip(HubApi.services(other, "0".repeat(64)))).toMatchObject({
        reason: "BadResponse",
        message: "GET /v1/services: unexpected answer from the hub"
      })
    }), 30_000)
})
