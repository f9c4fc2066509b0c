/**
 * Bench hub process: a relay with the in-memory policy serving ws and msgpack on a free 127.0.0.1 port.
 * Prints {"url"}; `stats` on stdin prints RSS and the JavaScript heap in use (after a GC when run with --expose-gc),
 * the relay's load, and the transport messages received from the agents so far.
 */
import * as Readline from "node:readline"
import { Effect } from "effect"
import type { Connection } from "../../core/Transport.ts"
import { makeMemoryRelayPolicy } from "../../core/MemoryRelayPolicy.ts"
import * as Relay from "../../hub/relay/Relay.ts"

/** Tokens of the two bench agents (exposer A, reacher B). */
export const benchAgents = [
  { token: "a".repeat(64), agentId: "bench-a", workspaceId: "bench" },
  { token: "b".repeat(64), agentId: "bench-b", workspaceId: "bench" }
]

const program = Effect.gen(function*() {
  const memory = makeMemoryRelayPolicy(benchAgents)
  // B5 holds 10,000 idle streams on one reaching agent's connection to measure the hub's memory per stream; the
  // production cap (1,024 per connection) would stop it at 1,024. Every other limit stays at its default.
  const relay = yield* Relay.make(memory.policy, { maxStreams: 20_000 })
  // Every connection is kept (a bench hub sees a handful) to count the transport messages the agents sent it.
  const connections: Array<Connection> = []
  const served = yield* Relay.serve({
    ...relay,
    accept: (connection) => {
      connections.push(connection)
      relay.accept(connection)
    }
  })
  console.log(JSON.stringify({ url: served.url }))
  yield* Effect.async<void>((resume) => {
    Readline.createInterface({ input: process.stdin })
      .on("line", (line) => {
        if (line !== "stats") return
        const gc = (globalThis as { gc?: () => void }).gc
        gc?.()
        const memory = process.memoryUsage()
        const received = connections.reduce((n, c) => n + c.received, 0)
        console.log(JSON.stringify({ rss: memory.rss, heap: memory.heapUsed + memory.external, received, ...relay.stats() }))
      })
      .on("close", () => resume(Effect.void))
  })
})

if (process.argv[1]?.endsWith("relay-hub.ts")) {
  Effect.runPromise(Effect.scoped(program)).then(() => process.exit(0))
}
