/**
 * A careless admin starts a second hub whose data directory holds the running hub's id (a second `connect hub` on the
 * same directory with `DATABASE_URL` set, a copied directory, a restored backup) on the same database. At its start a
 * hub closes in the log what "it" left open when it last died (PgLeftOpen.ts), by hub id: without a guard the second
 * hub recorded the first one's live agent as disconnected (`hub_crashed`) and its open tunnel as closed, while both
 * still carried traffic — then the real close came on top.
 */
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Layer, Scope } from "effect"
import * as HubClient from "../../../agent/HubClient.ts"
import * as HubId from "../../../hub/eventlog/HubId.ts"
import * as Main from "../../../hub/Main.ts"
import * as Ws from "../../../transports/Ws.ts"
import { echoServer } from "../../support/Echo.ts"
import * as Hub from "../../support/Hub.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"

/** Sends `data` through 127.0.0.1:`port`, half-closes, and resolves what came back until EOF. */
const roundTrip = (port: number, data: Buffer) =>
  Effect.promise(() =>
    new Promise<Buffer>((resolve, reject) => {
      const socket = Net.connect({ port, host: "127.0.0.1", allowHalfOpen: true })
      const chunks: Array<Buffer> = []
      socket.on("data", (c: Buffer) => chunks.push(c))
      socket.once("end", () => {
        socket.end()
        resolve(Buffer.concat(chunks))
      })
      socket.once("error", reject)
      socket.once("connect", () => socket.end(data))
    })
  ).pipe(Effect.timeout("10 seconds"), Effect.orDie)

/** Polls the hub's events until `check` holds (at most 10 s). */
const waitFor = (hub: Hub.TestHub, check: (events: ReadonlyArray<any>) => boolean) =>
  Effect.gen(function*() {
    const deadline = Date.now() + 10_000
    while (!check((yield* hub.events).map((e) => e.event))) {
      if (Date.now() > deadline) return yield* Effect.dieMessage("expected events did not appear in time")
      yield* Effect.sleep("50 millis")
    }
  })

/** A data directory holding `hubId`, removed when the scope closes. */
const dataDirWith = (hubId: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-hub-dup-"))
      Fs.writeFileSync(Path.join(dir, HubId.FILE), `${hubId}\n`, { mode: 0o600 })
      return dir
    }),
    (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
  )

describe("a second hub with the running hub's id", () => {
  it.scopedLive("does not close the running hub's agent connections and tunnels in the log", () =>
    Effect.gen(function*() {
      const databaseUrl = yield* TestDatabase.makeTestDatabaseUrl
      const first = yield* Hub.start({ databaseUrl })
      const { apiKey } = yield* first.workspace("acme")
      const agent = async (label: string) => {
        const r = await fetch(`${first.httpUrl}/v1/agents`, {
          method: "POST",
          headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
          body: JSON.stringify({ label })
        })
        return (await r.json()) as { agentId: string; token: string }
      }
      const a = yield* Effect.promise(() => agent("exposer"))
      const b = yield* Effect.promise(() => agent("reacher"))
      const clientA = yield* HubClient.connect({ url: first.agentUrl, transport: Ws.transport, token: a.token })
      const clientB = yield* HubClient.connect({ url: first.agentUrl, transport: Ws.transport, token: b.token })
      yield* clientA.expose("db", "127.0.0.1", yield* echoServer)
      const listener = yield* clientB.reach("db")
      expect((yield* roundTrip(listener.port, Buffer.from("before"))).toString()).toBe("before")
      // A tunnel left open: its TunnelOpened is on the log, its close is not (the connection stays open).
      const open = Net.connect({ port: listener.port, host: "127.0.0.1" })
      yield* Effect.addFinalizer(() => Effect.sync(() => open.destroy()))
      yield* waitFor(first, (events) => events.filter((e) => e._tag === "TunnelOpened").length >= 2)

      const hubId = Fs.readFileSync(Path.join(first.dataDir, HubId.FILE), "utf8").trim()
      const dataDir = yield* dataDirWith(hubId)
      // The second hub: same database, same id, another port. Either it refuses to start or it starts; what matters
      // is what it wrote.
      const second = yield* Effect.exit(Effect.scoped(
        Layer.build(Main.HubLive({ host: "127.0.0.1", port: 0, dataDir, databaseUrl }))
      ).pipe(Effect.timeout("60 seconds")))
      if (Exit.isFailure(second)) expect(Cause.pretty(second.cause)).toMatch(/hub id|another hub/i)

      const events = (yield* first.events).map((e) => e.event as any)
      expect({
        disconnected: events.filter((e) => e._tag === "AgentDisconnected").length,
        tunnelsClosed: events.filter((e) => e._tag === "TunnelClosed" && e.reason === "hub_crashed").length
      }).toEqual({ disconnected: 0, tunnelsClosed: 0 })
      // And the first hub still serves its agents.
      expect((yield* roundTrip(listener.port, Buffer.from("after"))).toString()).toBe("after")
    }), 120_000)

  it.scopedLive("starts once the hub holding the id has stopped", () =>
    Effect.gen(function*() {
      const databaseUrl = yield* TestDatabase.makeTestDatabaseUrl
      const start = (dataDir: string) =>
        Effect.scoped(Layer.build(Main.HubLive({ host: "127.0.0.1", port: 0, dataDir, databaseUrl })).pipe(Effect.asVoid))
      const scope = yield* Scope.make()
      const first = yield* Scope.extend(Hub.start({ databaseUrl }), scope)
      const hubId = Fs.readFileSync(Path.join(first.dataDir, HubId.FILE), "utf8").trim()
      const dataDir = yield* dataDirWith(hubId)
      // While the first runs, the second is refused; once it has stopped, the same start goes through.
      const during = yield* Effect.exit(start(dataDir).pipe(Effect.timeout("60 seconds")))
      expect(Exit.isFailure(during)).toBe(true)
      yield* Scope.close(scope, Exit.void)
      const again = yield* dataDirWith(hubId)
      yield* Effect.exit(start(again)).pipe(Effect.flatMap((exit) => Effect.sync(() => expect(Exit.isSuccess(exit)).toBe(true))))
    }), 120_000)
})
