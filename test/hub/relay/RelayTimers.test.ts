/**
 * The relay's deadlines and durations come from Effect's clock, so `TestClock` drives them and no test waits out a real
 * timeout. The agents are hand-driven in-memory connections (frames and policy decisions run on microtasks and the
 * scheduler, which the test clock does not hold back).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import { makeMemoryRelayPolicy } from "../../../core/MemoryRelayPolicy.ts"
import * as Protocol from "../../../core/Protocol.ts"
import type { Message } from "../../../core/Protocol.ts"
import { CLOSE_CODES } from "../../../core/Transport.ts"
import type { CloseInfo } from "../../../core/Transport.ts"
import * as Relay from "../../../hub/relay/Relay.ts"
import * as Memory from "../../../transports/Memory.ts"

const agents = [
  { token: "a".repeat(64), agentId: "agent-a", workspaceId: "w1" },
  { token: "b".repeat(64), agentId: "agent-b", workspaceId: "w1" }
]

/** Lets frames and decisions in flight run, in real time. */
const settle = Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 30)))

/** Waits in real time until `check` holds. */
const until = (check: () => boolean) =>
  Effect.promise(async () => {
    const deadline = Date.now() + 3_000
    while (!check()) {
      if (Date.now() > deadline) throw new Error("condition not met in time")
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
  })

/** An in-memory connection accepted by `relay`, recording what it receives and how it closed. */
const accepted = (relay: Relay.RelayService) => {
  const [connection, server] = Memory.makePair()
  const received: Array<Message> = []
  const ended: { info: CloseInfo | undefined } = { info: undefined }
  connection.setHandler({ message: (m) => received.push(m), close: (info) => (ended.info = info) })
  relay.accept(server)
  const find = <T extends Message["_tag"]>(tag: T, test: (m: Extract<Message, { _tag: T }>) => boolean = () => true) =>
    received.find((m): m is Extract<Message, { _tag: T }> => m._tag === tag && test(m as Extract<Message, { _tag: T }>))
  return { connection, received, ended, find }
}

/** An agent that said Hello and got its Welcome. */
const welcomed = (relay: Relay.RelayService, token: string) =>
  Effect.gen(function*() {
    const agent = accepted(relay)
    agent.connection.send(
      new Protocol.Hello({ protocol: Protocol.PROTOCOL_VERSION, token, transport: "memory", agentVersion: "test" })
    )
    yield* until(() => agent.find("Welcome") !== undefined)
    return agent
  })

/** Agent A exposing "svc" (it answers nothing else), and agent B. */
const pair = (options: Relay.RelayOptions) =>
  Effect.gen(function*() {
    const memory = makeMemoryRelayPolicy(agents)
    const relay = yield* Relay.make(memory.policy, options)
    const a = yield* welcomed(relay, agents[0]!.token)
    a.connection.send(new Protocol.Expose({ request: 1, name: "svc", host: "127.0.0.1", port: 9 }))
    yield* until(() => a.find("Ack") !== undefined)
    const b = yield* welcomed(relay, agents[1]!.token)
    return { memory, relay, a, b }
  })

describe("Relay timers on the Effect clock", () => {
  it.scoped("closes a connection without Hello at helloTimeout (4008) and not before; a welcomed one stays", () =>
    Effect.gen(function*() {
      const relay = yield* Relay.make(makeMemoryRelayPolicy(agents).policy, { helloTimeout: "10 seconds" })
      const silent = accepted(relay)
      const agent = yield* welcomed(relay, agents[0]!.token)
      yield* TestClock.adjust("9999 millis")
      yield* settle
      expect(silent.ended.info).toBeUndefined()
      yield* TestClock.adjust("1 millis")
      yield* until(() => silent.ended.info !== undefined)
      expect(silent.ended.info).toEqual({ code: CLOSE_CODES.Timeout, reason: "no Hello in time" })
      yield* settle
      expect(agent.ended.info).toBeUndefined()
    }))

  it.scoped("fails a Check the exposer does not answer at checkTimeout, and not before", () =>
    Effect.gen(function*() {
      const { a, b } = yield* pair({ checkTimeout: "10 seconds" })
      b.connection.send(new Protocol.Check({ request: 7, name: "svc" }))
      yield* until(() => a.find("Probe") !== undefined)
      yield* TestClock.adjust("9999 millis")
      yield* settle
      expect(b.find("Error")).toBeUndefined()
      yield* TestClock.adjust("1 millis")
      yield* until(() => b.find("Error") !== undefined)
      expect(b.find("Error")).toMatchObject({
        code: "Unavailable",
        message: "the agent exposing svc did not answer the check within 10 s",
        request: 7
      })
      expect(b.ended.info).toBeUndefined()
    }))

  it.scoped("records a tunnel's duration by the clock", () =>
    Effect.gen(function*() {
      const { a, b, memory } = yield* pair({})
      b.connection.send(new Protocol.Open({ stream: 1, service: "svc" }))
      yield* until(() => a.find("Open") !== undefined)
      const stream = a.find("Open")!.stream
      yield* TestClock.adjust("5 seconds")
      b.connection.send(new Protocol.End({ stream: 1 }))
      a.connection.send(new Protocol.End({ stream }))
      yield* until(() => memory.events.some((e) => e._tag === "TunnelClosed"))
      const closed = memory.events.find((e) => e._tag === "TunnelClosed")
      expect(closed?._tag === "TunnelClosed" && closed.totals).toMatchObject({ durationMs: 5_000, reason: "closed" })
    }))
})
