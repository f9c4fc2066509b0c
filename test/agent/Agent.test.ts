/**
 * The running agent in one process over real TCP on 127.0.0.1, against the relay with the in-memory policy: exposures
 * and reaches restored after restarts with the same local port, reach listeners bound while the hub is away, the
 * control socket, and refusals (unknown service, unknown token, a second agent on one home).
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Option, Scope } from "effect"
import * as Agent from "../../agent/Agent.ts"
import * as Control from "../../agent/Control.ts"
import * as State from "../../agent/State.ts"
import { makeMemoryRelayPolicy } from "../../core/MemoryRelayPolicy.ts"
import type { RelayPolicyService } from "../../core/RelayPolicy.ts"
import * as Relay from "../../hub/relay/Relay.ts"

const agents = [
  { token: "a".repeat(64), agentId: "agent-a", workspaceId: "w1" },
  { token: "b".repeat(64), agentId: "agent-b", workspaceId: "w1" }
]

const dirs: Array<string> = []
afterAll(() => {
  for (const dir of dirs) Fs.rmSync(dir, { recursive: true, force: true })
})

const run = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>, scope: Scope.Scope) =>
  Effect.runPromise(Scope.extend(effect, scope))

/** A relay on `port` (0: a free one) in its own scope, with a fresh memory policy, as a restarted hub has. */
const startHub = async (port = 0, tokenExpiresAt?: string) => {
  const scope = Effect.runSync(Scope.make())
  const memory = makeMemoryRelayPolicy(agents).policy
  const policy: RelayPolicyService = tokenExpiresAt === undefined
    ? memory
    : { ...memory, authenticate: (hello, address) => Effect.map(memory.authenticate(hello, address), (s) => ({ ...s, tokenExpiresAt })) }
  const served = await run(Effect.flatMap(Relay.make(policy), (relay) => Relay.serve(relay, { port })), scope)
  return { port: served.port, stop: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

/** A provisioned agent home for memory agent `index` of the hub on `port`. */
const makeHome = (index: number, hubPort: number) => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-agent-"))
  dirs.push(dir)
  Effect.runSync(
    State.save(dir, {
      hubUrl: `http://127.0.0.1:${hubPort}`,
      agentId: agents[index]!.agentId,
      workspaceId: agents[index]!.workspaceId,
      token: agents[index]!.token,
      transport: index === 0 ? "ws" : "msgpack",
      exposures: [],
      reaches: {}
    })
  )
  return dir
}

const quiet = { out: () => {}, err: () => {}, backoff: { base: "50 millis", cap: "200 millis" } } as const

/** Starts an agent in its own scope. */
const startAgent = async (home: string, lines: Array<string> = []) => {
  const scope = Effect.runSync(Scope.make())
  const agent = await run(
    Agent.make({ home, ...quiet, out: (l) => lines.push(l), err: (l) => lines.push(l) }),
    scope
  )
  return { agent, lines, stop: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

const echoServer = () =>
  new Promise<{ port: number; close: () => void }>((resolve) => {
    const server = Net.createServer((socket) => {
      socket.on("error", () => {})
      socket.pipe(socket)
    })
    server.listen(0, "127.0.0.1", () =>
      resolve({ port: (server.address() as Net.AddressInfo).port, close: () => server.close() }))
  })

/** Sends `data` through 127.0.0.1:`port`, half-closes, and resolves the sha256 of everything read back. */
const roundTrip = (port: number, data: Buffer, timeoutMs = 10_000) =>
  new Promise<string>((resolve, reject) => {
    const socket = Net.connect({ port, host: "127.0.0.1", allowHalfOpen: true })
    const hash = Crypto.createHash("sha256")
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error("round trip timed out"))
    }, timeoutMs)
    socket.on("data", (chunk: Buffer) => hash.update(chunk))
    socket.once("end", () => {
      clearTimeout(timer)
      socket.end()
      resolve(hash.digest("hex"))
    })
    socket.once("error", (error) => {
      clearTimeout(timer)
      reject(error)
    })
    socket.end(data)
  })

const sha = (data: Buffer) => Crypto.createHash("sha256").update(data).digest("hex")

const eventually = async (check: () => boolean, ms = 5_000) => {
  const until = Date.now() + ms
  while (!check()) {
    if (Date.now() > until) throw new Error("condition not met in time")
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe("Agent", () => {
  it("exposes, reaches and moves bytes; a restarted agent restores both and keeps the reach port", async () => {
    const hub = await startHub()
    const echo = await echoServer()
    const homeA = makeHome(0, hub.port)
    const homeB = makeHome(1, hub.port)
    const a = await startAgent(homeA)
    await Effect.runPromise(a.agent.connected)
    expect(a.lines[0]).toBe(`connected to http://127.0.0.1:${hub.port} as agent-a (workspace w1)`)
    expect(await Effect.runPromise(a.agent.expose("echo", "127.0.0.1", echo.port))).toMatchObject({ pending: false })
    const b = await startAgent(homeB)
    await Effect.runPromise(b.agent.connected)
    const { port } = await Effect.runPromise(b.agent.reach("echo"))
    const data = Crypto.randomBytes(256 * 1024)
    expect(await roundTrip(port, data)).toBe(sha(data))

    await b.stop()
    await a.stop()
    expect(Fs.existsSync(State.paths(homeB).socket)).toBe(false)
    expect(Fs.existsSync(State.paths(homeB).pid)).toBe(false)
    const a2 = await startAgent(homeA)
    const b2 = await startAgent(homeB)
    // Bound before the first connection: the port is back as soon as the process is.
    expect(b2.agent.status().reaches).toEqual([{ name: "echo", port, bound: true }])
    await Effect.runPromise(a2.agent.connected)
    await Effect.runPromise(b2.agent.connected)
    expect(await roundTrip(port, data)).toBe(sha(data))
    await b2.stop()
    await a2.stop()
    await hub.stop()
    echo.close()
  })

  it("keeps reach ports bound while the hub is away; a connection made meanwhile waits and flows once it is back", async () => {
    const hub = await startHub()
    const echo = await echoServer()
    const a = await startAgent(makeHome(0, hub.port))
    const b = await startAgent(makeHome(1, hub.port))
    await Effect.runPromise(a.agent.connected)
    await Effect.runPromise(b.agent.connected)
    await Effect.runPromise(a.agent.expose("echo", "127.0.0.1", echo.port))
    const { port } = await Effect.runPromise(b.agent.reach("echo"))

    await hub.stop()
    await eventually(() => !b.agent.status().connected && !a.agent.status().connected)
    const data = Crypto.randomBytes(64 * 1024)
    const during = roundTrip(port, data)
    await new Promise((r) => setTimeout(r, 300))
    const hub2 = await startHub(hub.port)
    expect(await during).toBe(sha(data))
    expect(await roundTrip(port, data)).toBe(sha(data))
    expect(b.lines.filter((l) => l.startsWith("connected to")).length).toBe(2)
    await b.stop()
    await a.stop()
    await hub2.stop()
    echo.close()
  })

  it("comes back within ~1 s of a restarted hub although its backoff has grown to many seconds", async () => {
    const hub = await startHub()
    const scope = Effect.runSync(Scope.make())
    const lines: Array<string> = []
    const agent = await run(
      Agent.make({ home: makeHome(0, hub.port), out: (l) => lines.push(l), err: (l) => lines.push(l), backoff: { base: "20 seconds", cap: "30 seconds", random: () => 0.99 } }),
      scope
    )
    await Effect.runPromise(agent.connected)
    await hub.stop()
    await eventually(() => lines.some((l) => l.startsWith("reconnecting in 19.8 s")))
    const hub2 = await startHub(hub.port)
    const back = Date.now()
    await eventually(() => agent.status().connected, 5_000)
    expect(Date.now() - back).toBeLessThan(3_000)
    expect(lines).toContain("the hub accepts connections again; reconnecting now")
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await hub2.stop()
  })

  it("warns when the hub says the token expires within 7 days", async () => {
    const expires = new Date(Date.now() + 3 * 86_400_000 + 3_600_000).toISOString()
    const hub = await startHub(0, expires)
    const a = await startAgent(makeHome(0, hub.port))
    await Effect.runPromise(a.agent.connected)
    expect(a.lines).toContain(`warning: the agent token expires at ${expires} (in 3 days); run \`connect up --rotate-token\``)
    await a.stop()
    await hub.stop()
  })

  it("closes a connection that waited too long for the hub, with a log line", async () => {
    const hub = await startHub()
    const home = makeHome(1, hub.port)
    await hub.stop()
    const scope = Effect.runSync(Scope.make())
    const lines: Array<string> = []
    const agent = await run(Agent.make({ home, ...quiet, err: (l) => lines.push(l), pending: "300 millis" }), scope)
    const { port } = await Effect.runPromise(agent.reach("svc", 0))
    await expect(roundTrip(port, Buffer.from("x"), 5_000)).rejects.toThrow(/ECONNRESET/)
    expect(lines).toContain("reach svc: not connected to the hub for 0.3 s; closed a local connection")
    await Effect.runPromise(Scope.close(scope, Exit.void))
  })

  it("refuses a reach of an unknown service with the hub's answer and binds nothing", async () => {
    const hub = await startHub()
    const b = await startAgent(makeHome(1, hub.port))
    await Effect.runPromise(b.agent.connected)
    const error = await Effect.runPromise(Effect.flip(b.agent.reach("nope")))
    expect(error).toMatchObject({ reason: "Denied", code: "ServiceNotFound" })
    expect(error.message).toContain("cannot reach nope: Service not found")
    expect(b.agent.status().reaches).toEqual([])
    await b.stop()
    await hub.stop()
  })

  it("serves the control socket (owner-only) and refuses a second agent on the same home", async () => {
    const hub = await startHub()
    const echo = await echoServer()
    const home = makeHome(0, hub.port)
    const a = await startAgent(home)
    await Effect.runPromise(a.agent.connected)
    const socket = State.paths(home).socket
    expect(Fs.statSync(socket).mode & 0o777).toBe(0o600)
    expect(Fs.readFileSync(State.paths(home).pid, "utf8").trim()).toBe(String(process.pid))
    const exposed = await Effect.runPromise(Control.request(socket, { op: "expose", name: "echo", host: "127.0.0.1", port: echo.port }))
    expect(exposed).toEqual({ name: "echo", host: "127.0.0.1", port: echo.port, pending: false })
    const status = (await Effect.runPromise(Control.request(socket, { op: "status" }))) as Agent.Status
    expect(status).toMatchObject({ agentId: "agent-a", connected: true, running: true, exposures: [{ name: "echo" }] })
    const missing = await Effect.runPromise(Effect.flip(Control.request(socket, { op: "unexpose", name: "other" })))
    expect(missing).toMatchObject({ reason: "Failed", code: "NotFound" })
    expect(await Effect.runPromise(Control.request(socket, { op: "unexpose", name: "echo" }))).toBeUndefined()

    const reached = (await Effect.runPromise(Control.request(socket, { op: "reach", name: "echo" }).pipe(Effect.flip))) as unknown
    expect(reached).toMatchObject({ reason: "Failed", code: "ServiceNotFound" })
    await Effect.runPromise(Control.request(socket, { op: "expose", name: "echo", host: "127.0.0.1", port: echo.port }))
    const { port } = (await Effect.runPromise(Control.request(socket, { op: "reach", name: "echo" }))) as Agent.Reached
    await Effect.runPromise(Control.request(socket, { op: "unreach", name: "echo" }))
    await expect(roundTrip(port, Buffer.from("x"), 2_000)).rejects.toThrow(/ECONNREFUSED/)
    expect(Effect.runSync(State.load(home)).pipe(Option.getOrThrow).reaches).toEqual({})

    const second = await Effect.runPromise(Effect.flip(Effect.scoped(Agent.make({ home, ...quiet }))))
    expect(second).toMatchObject({ _tag: "ControlError", reason: "AlreadyRunning" })
    await a.stop()
    await expect(Effect.runPromise(Control.request(socket, { op: "status" }))).rejects.toThrow(/no agent is running/)
    await hub.stop()
    echo.close()
  })

  it("stops with Unauthorized when the hub refuses the token", async () => {
    const hub = await startHub()
    const home = makeHome(0, hub.port)
    Effect.runSync(State.update(home, (s) => ({ ...s, token: "9".repeat(64) })))
    const a = await startAgent(home)
    const exit = await Effect.runPromise(Fiber.await(a.agent.loop))
    expect(Exit.isFailure(exit) && JSON.stringify(exit.cause)).toContain("Unauthorized")
    expect(a.lines.join("\n")).not.toContain("9".repeat(64))
    await a.stop()
    await hub.stop()
  })
})
