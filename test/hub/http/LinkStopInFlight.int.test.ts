/**
 * Public-link requests in flight when the hub stops (a graceful stop: SIGTERM, a restart by systemd): every request
 * let through or refused is on the record once the hub has started again on the same data directory and database —
 * appended before it stopped, or spooled then and replayed at the next start.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as HttpServer from "@effect/platform/HttpServer"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer, Scope } from "effect"
import * as HubClient from "../../../agent/HubClient.ts"
import * as Admin from "../../../hub/commands/Admin.ts"
import * as Main from "../../../hub/Main.ts"
import * as Msgpack from "../../../transports/Msgpack.ts"
import { send, startService } from "../../support/LinkWorld.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"

/** Builds a hub on `dataDir` and `databaseUrl` in `scope`; its port and how to run effects in it. */
const startHub = (dataDir: string, databaseUrl: string, scope: Scope.Scope) =>
  Effect.gen(function*() {
    const context = yield* Scope.extend(
      Layer.build(Main.HubLive({ host: "127.0.0.1", port: 0, dataDir, databaseUrl })).pipe(Effect.orDie),
      scope
    )
    const address = Context.get(context, HttpServer.HttpServer).address
    return { port: address._tag === "TcpAddress" ? address.port : 0, context }
  })

const json = async (url: string, method: string, bearer: string, body?: unknown) => {
  const r = await fetch(url, {
    method,
    headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  return { status: r.status, body: (await r.json()) as any }
}

const linkAccessed = (databaseUrl: string) =>
  Effect.promise(() =>
    TestDatabase.queryOnce<{ data: any }>(databaseUrl, `select data from events where type = 'LinkAccessed' order by position`)
  )

describe("link requests in flight when the hub stops", () => {
  it.scopedLive("are on the record after the next start", () =>
    Effect.gen(function*() {
      const databaseUrl = yield* TestDatabase.makeTestDatabaseUrl
      const dataDir = yield* Effect.acquireRelease(
        Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-hub-stop-"))),
        (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
      )
      const service = yield* startService
      const scope = yield* Scope.make()
      const hub = yield* startHub(dataDir, databaseUrl, scope)
      const base = `http://127.0.0.1:${hub.port}`
      const { apiKey } = yield* Effect.provide(Admin.createWorkspace("links"), hub.context).pipe(
        Effect.map((w) => ({ apiKey: w.apiKey.key })),
        Effect.orDie
      )
      const agent = (yield* Effect.promise(() => json(`${base}/v1/agents`, "POST", apiKey, { label: "exposer" }))).body
      const client = yield* Scope.extend(
        HubClient.connect({ url: `ws://127.0.0.1:${hub.port}/v1/agent`, transport: Msgpack.transport, token: agent.token }),
        scope
      )
      yield* client.expose("web", "127.0.0.1", service.port)
      const link = yield* Effect.promise(() => json(`${base}/v1/links`, "POST", apiKey, { service: "web", rateLimit: "100000/min", methods: ["GET", "POST"] }))
      expect(link.status).toBe(201)
      const path = new URL(link.body.url).pathname.replace(/\/$/, "")

      // One request answered, then three whose bodies are still coming when the hub stops.
      expect((yield* send(hub.port, `${path}/done`)).status).toBe(200)
      const inFlight = yield* Effect.forEach([1, 2, 3], (i) =>
        Effect.fork(send(hub.port, `${path}/slow-${i}`, { chunks: [Buffer.alloc(10, 1)], hold: true })))
      const deadline = Date.now() + 10_000
      while (service.seen.filter((s) => s.includes("/slow-")).length < 3 && Date.now() < deadline) {
        yield* Effect.sleep("20 millis")
      }
      expect(service.seen).toContain("POST /slow-3")

      yield* Scope.close(scope, Exit.void)
      yield* Effect.forEach(inFlight, Fiber.join)

      // The next start replays what the last one spooled.
      const again = yield* Scope.make()
      yield* startHub(dataDir, databaseUrl, again)
      const deadline2 = Date.now() + 10_000
      // Requests cut alike (same address and reason) may share one event with their count.
      const requests = (rows: ReadonlyArray<{ data: any }>) => rows.reduce((n, r) => n + (r.data.count ?? 1), 0)
      let rows = yield* linkAccessed(databaseUrl)
      while (requests(rows) < 4 && Date.now() < deadline2) {
        yield* Effect.sleep("100 millis")
        rows = yield* linkAccessed(databaseUrl)
      }
      yield* Scope.close(again, Exit.void)
      expect(requests(rows)).toBe(4)
      expect(rows.filter((r) => r.data.path === "/done").map((r) => r.data.status)).toEqual([200])
      expect(requests(rows.filter((r) => /^\/slow-[123]$/.test(r.data.path)))).toBe(3)
    }), 120_000)
})
