/**
 * The relay under a seeded fuzzer, in this process so that its memory can be read: random and mutated frames of both
 * transports from strangers, two pairs of colluding agents sending random Open/Data/Credit/End/Reset sequences on
 * shared streams (beyond the windows, with readers that stop reading), and raw bytes after an upgrade. The relay must
 * close offenders with a protocol code (never 1011), keep its buffered bytes within the windows, release everything
 * once they leave, and still carry an honest tunnel. FUZZ_SEED picks the seed, FUZZ_SECONDS the length (default 4 s).
 */
import * as Net from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as HubClient from "../../agent/HubClient.ts"
import { makeMemoryRelayPolicy } from "../../core/MemoryRelayPolicy.ts"
import * as Protocol from "../../core/Protocol.ts"
import type { Connection } from "../../core/Transport.ts"
import { CLOSE_CODES } from "../../core/Transport.ts"
import * as Relay from "../../hub/relay/Relay.ts"
import * as Msgpack from "../../transports/Msgpack.ts"
import * as Ws from "../../transports/Ws.ts"
import { echoServer } from "../support/Echo.ts"
import * as Campaign from "./Campaign.ts"
import * as Fuzzer from "./Fuzzer.ts"

const Pairs = 2

const agents = [
  ...Array.from({ length: 2 * Pairs }, (_, i) => ({ token: `${i}`.repeat(64), agentId: `colluder-${i}`, workspaceId: "w1" })),
  { token: "s".repeat(64), agentId: "stranger", workspaceId: "w1" },
  { token: "h".repeat(64), agentId: "honest-a", workspaceId: "w2" },
  { token: "k".repeat(64), agentId: "honest-b", workspaceId: "w2" }
]

/**
 * What the relay may hold for one colluding pair: each of the pair's two connections may have `CONNECTION_WINDOW` in
 * flight towards a reader that does not read, and a few MiB more of frames without bytes (Open, Reset, Pong, Error)
 * and of a connection still closing while its agent's next one starts.
 */
const BoundPerPair = 2 * Protocol.CONNECTION_WINDOW + 4 * 1024 * 1024

/** Growth of the heap allowed over the campaign: the relay's routes and pending frames are bounded; a leak is not. */
const HeapGrowth = 256 * 1024 * 1024

const until = async (check: () => boolean, ms: number) => {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) return false
    await new Promise((r) => setTimeout(r, 20))
  }
  return true
}

const echoOnce = (port: number, text: string) =>
  new Promise<string>((resolve, reject) => {
    const socket = Net.connect({ port, host: "127.0.0.1" })
    let got = ""
    socket.on("data", (c: Buffer) => {
      got += c.toString()
      if (got === text) {
        socket.destroy()
        resolve(got)
      }
    })
    socket.on("error", reject)
    socket.write(text)
  })

describe("relay fuzzing (in process)", () => {
  const seed = Fuzzer.seedFromEnv()
  const duration = Fuzzer.durationFromEnv(4)

  it(`seed ${seed}, ${duration / 1000} s: protocol closes only, buffered bytes within the windows, all released`, () =>
    Effect.gen(function*() {
      console.log(`relay fuzz: FUZZ_SEED=${seed} FUZZ_SECONDS=${duration / 1000}`)
      const memory = makeMemoryRelayPolicy(agents)
      const relay = yield* Relay.make(memory.policy)
      // Every close code the relay or its carrier chose, seen from the hub's side.
      const hubCloses = new Map<number, number>()
      const watched = (connection: Connection): Connection => {
        const close = connection.close
        ;(connection as { close: Connection["close"] }).close = (code, reason) => {
          if (!connection.closed) hubCloses.set(code, (hubCloses.get(code) ?? 0) + 1)
          close(code, reason)
        }
        return connection
      }
      const served = yield* Relay.serve({ ...relay, accept: (c) => relay.accept(watched(c)) })
      const port = Number(new URL(served.url).port)

      const heapBefore = process.memoryUsage().heapUsed
      let maxBuffered = 0
      let maxHeap = heapBefore
      let maxArrayBuffers = 0
      const sampler = setInterval(() => {
        maxBuffered = Math.max(maxBuffered, relay.stats().bufferedBytes)
        const usage = process.memoryUsage()
        maxHeap = Math.max(maxHeap, usage.heapUsed)
        maxArrayBuffers = Math.max(maxArrayBuffers, usage.arrayBuffers)
      }, 10)

      const rng = Fuzzer.makeRng(seed)
      const findings = Campaign.makeFindings()
      const deadline = Date.now() + duration
      const common = { url: served.url, deadline, findings }
      const started = Date.now()
      yield* Effect.promise(() =>
        Promise.all([
          ...Array.from({ length: Pairs }, (_, p) =>
            Campaign.colludingPair({
              ...common,
              rng: rng.fork(`pair-${p}`),
              tokens: [agents[2 * p]!.token, agents[2 * p + 1]!.token],
              label: `fz-pair-${p}`
            })),
          Campaign.strangers({ ...common, rng: rng.fork("strangers"), token: "s".repeat(64), label: "stranger" }),
          Campaign.rawUpgrades({ ...common, rng: rng.fork("raw"), port, path: "/" })
        ])
      )
      const campaignMs = Date.now() - started

      // Every fuzzing client has left: the relay must let go of every connection, stream and buffered byte.
      const released = yield* Effect.promise(() =>
        until(() => {
          const s = relay.stats()
          return s.connections === 0 && s.streams === 0 && s.bufferedBytes === 0
        }, 10_000)
      )
      clearInterval(sampler)
      console.log(
        `relay fuzz: ${Campaign.summary(findings)} in ${campaignMs} ms; hub closes: ` +
          [...hubCloses].map(([c, n]) => `${c}×${n}`).join(" ") +
          `; max buffered ${(maxBuffered / 2 ** 20).toFixed(1)} MiB (bound ${(Pairs * BoundPerPair / 2 ** 20).toFixed(0)} MiB), ` +
          `heap +${((maxHeap - heapBefore) / 2 ** 20).toFixed(1)} MiB, arrayBuffers max ${(maxArrayBuffers / 2 ** 20).toFixed(1)} MiB`
      )
      expect(findings.problems, `FUZZ_SEED=${seed}`).toEqual([])
      expect(hubCloses.get(CLOSE_CODES.Internal) ?? 0, `FUZZ_SEED=${seed}: the hub closed a connection with 1011`).toBe(0)
      expect([...hubCloses.keys()].filter((c) => !Campaign.AllowedCloseCodes.has(c))).toEqual([])
      expect(released, `FUZZ_SEED=${seed}: left ${JSON.stringify(relay.stats())}`).toBe(true)
      expect(maxBuffered).toBeLessThanOrEqual(Pairs * BoundPerPair)
      expect(maxHeap - heapBefore).toBeLessThanOrEqual(HeapGrowth)
      // The campaign did reach the streams: violations were met with protocol closes.
      expect(findings.frames).toBeGreaterThan(100)
      expect(hubCloses.get(CLOSE_CODES.Protocol) ?? 0).toBeGreaterThan(0)

      // And the relay still carries an honest tunnel.
      const exposer = yield* HubClient.connect({ url: served.url, transport: Msgpack.transport, token: "h".repeat(64) })
      yield* exposer.expose("after-fuzz", "127.0.0.1", yield* echoServer)
      const reacher = yield* HubClient.connect({ url: served.url, transport: Ws.transport, token: "k".repeat(64) })
      const listener = yield* reacher.reach("after-fuzz")
      expect(yield* Effect.promise(() => echoOnce(listener.port, "still relaying"))).toBe("still relaying")
    }).pipe(Effect.scoped, Effect.runPromise), duration + 60_000)
})
