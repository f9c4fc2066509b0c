/**
 * Command over the memory log, no Postgres: after an append whose outcome is unknown (Unavailable) it appends the same
 * events with the same ids, so what did commit is not stored twice; after a version conflict it reads and decides
 * again; a refusal or a no-op appends nothing.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, TestClock } from "effect"
import * as AgentDecider from "../../../core/AgentDecider.ts"
import { EventLog } from "../../../core/EventLog.ts"
import * as E from "../../../core/Events.ts"
import { AgentId, Streams, uuidv7, WorkspaceId } from "../../../core/Ids.ts"
import * as MemoryEventLog from "../../../core/MemoryEventLog.ts"
import * as WorkspaceDecider from "../../../core/WorkspaceDecider.ts"
import * as Command from "../../../hub/commands/Command.ts"

const meta = new E.EventMeta({ actor: { kind: "admin", id: "tester" } })
const workspaceId = WorkspaceId.make(uuidv7())
const agentId = AgentId.make(uuidv7())
const workspace = Streams.workspace(workspaceId)
const agent = Streams.agent(agentId)

const provisioned = new E.AgentProvisioned({
  agentId,
  label: "laptop",
  tokenHash: E.Sha256Hex.make("0".repeat(64)),
  expiresAt: new Date("2030-01-01T00:00:00.000Z")
})
const connectFrom = (ip: string) => ({ _tag: "ConnectAgent", agentId, ip, userAgent: "connect/1", transport: "ws" }) as const
const connectedFrom = (ip: string) => new E.AgentConnected({ agentId, ip, userAgent: "connect/1", transport: "ws" })

const createWorkspace = Command.handle(
  WorkspaceDecider.decider,
  workspace,
  { _tag: "CreateWorkspace", workspaceId, name: "acme" },
  { workspaceId, meta }
)

const connect = (ip: string) => Command.handle(AgentDecider.decider, agent, connectFrom(ip), { workspaceId, meta })

/** Runs a command to its end, moving the test clock past every retry delay. */
const settle = <A, E>(command: Effect.Effect<A, E, EventLog>, log: EventLog["Type"]) =>
  Effect.gen(function* () {
    const fiber = yield* Effect.fork(Effect.provideService(command, EventLog, log))
    yield* TestClock.adjust("1 minute")
    return yield* Fiber.join(fiber)
  })

/**
 * The memory log with another writer that appends `event` to the agent's stream right after each of the command's
 * first `times` reads: the race a version check must catch.
 */
const racing = (memory: MemoryEventLog.MemoryEventLog, event: E.Event, times: number): EventLog["Type"] => {
  let left = times
  return {
    ...memory.log,
    readStream: (stream, afterVersion) =>
      Effect.tap(memory.log.readStream(stream, afterVersion), () =>
        left-- > 0 ? Effect.orDie(memory.log.append(stream, [event], { expectedVersion: "any", workspaceId, meta })) : Effect.void)
  }
}

const types = (log: EventLog["Type"], stream: string) => Effect.map(log.readStream(stream), (es) => es.map((e) => e.type))

describe("Command.handle over the memory log", () => {
  it.effect("appends the decided events with the stream's version, the workspace and the meta", () =>
    Effect.gen(function* () {
      const { log } = yield* MemoryEventLog.make
      const handled = yield* settle(createWorkspace, log)
      expect(handled.events).toEqual([new E.WorkspaceCreated({ workspaceId, name: "acme" })])
      const [stored] = yield* log.readStream(workspace)
      expect(stored).toMatchObject({ version: 1, workspaceId, meta, event: handled.events[0] })
    }))

  it.effect("a reply lost after the commit: the same events with the same ids again, stored once, and the command succeeds", () =>
    Effect.gen(function* () {
      const memory = yield* MemoryEventLog.make
      memory.failNextAppend("replyLost")
      const handled = yield* settle(createWorkspace, memory.log)
      // With new ids the retry would conflict with the first attempt's event and the decider refuse: AlreadyExists.
      expect(handled.events).toHaveLength(1)
      expect(yield* types(memory.log, workspace)).toEqual(["WorkspaceCreated"])
    }))

  it.effect("the log unreachable twice: the third attempt stores the events once", () =>
    Effect.gen(function* () {
      const memory = yield* MemoryEventLog.make
      memory.failNextAppend("unreachable")
      memory.failNextAppend("unreachable")
      yield* settle(createWorkspace, memory.log)
      expect(yield* types(memory.log, workspace)).toEqual(["WorkspaceCreated"])
    }))

  it.effect("an outage that outlasts three attempts fails the command as Unavailable, nothing stored", () =>
    Effect.gen(function* () {
      const memory = yield* MemoryEventLog.make
      for (let i = 0; i < 3; i++) memory.failNextAppend("unreachable")
      const error = yield* Effect.flip(settle(createWorkspace, memory.log))
      expect(error).toMatchObject({ _tag: "EventLogError", reason: "Unavailable" })
      expect(yield* types(memory.log, workspace)).toEqual([])
    }))

  it.effect("a version conflict: it reads the other writer's events and decides again on them", () =>
    Effect.gen(function* () {
      const memory = yield* MemoryEventLog.make
      yield* memory.log.append(agent, [provisioned], { expectedVersion: "no_stream", workspaceId, meta })
      // The other writer connects the agent from 10.0.0.1 while this command, from 10.0.0.2, decides.
      const handled = yield* settle(connect("10.0.0.2"), racing(memory, connectedFrom("10.0.0.1"), 1))
      expect(handled.events).toEqual([
        connectedFrom("10.0.0.2"),
        new E.AgentIpChanged({ agentId, previousIp: "10.0.0.1", newIp: "10.0.0.2" })
      ])
      expect(yield* types(memory.log, agent)).toEqual(["AgentProvisioned", "AgentConnected", "AgentConnected", "AgentIpChanged"])
      expect(handled.state).toMatchObject({ lastIp: "10.0.0.2" })
    }))

  it.effect("conflicts on every one of 9 attempts fail the command as VersionConflict, nothing of its own stored", () =>
    Effect.gen(function* () {
      const memory = yield* MemoryEventLog.make
      yield* memory.log.append(agent, [provisioned], { expectedVersion: "no_stream", workspaceId, meta })
      const error = yield* Effect.flip(settle(connect("10.0.0.2"), racing(memory, connectedFrom("10.0.0.1"), 9)))
      expect(error).toMatchObject({ _tag: "VersionConflict", stream: agent })
      const stored = yield* memory.log.readStream(agent)
      expect(stored.map((e) => e.event)).toEqual([provisioned, ...Array.from({ length: 9 }, () => connectedFrom("10.0.0.1"))])
    }))

  it.effect("a refusal is returned as is and appends nothing; a no-op appends nothing", () =>
    Effect.gen(function* () {
      const { log } = yield* MemoryEventLog.make
      yield* settle(createWorkspace, log)
      expect(yield* Effect.flip(settle(createWorkspace, log))).toMatchObject({ _tag: "DomainError", reason: "AlreadyExists" })
      yield* log.append(agent, [provisioned, new E.AgentTokenRevoked({ agentId })], { expectedVersion: "no_stream", workspaceId, meta })
      const revokeAgain = Command.handle(AgentDecider.decider, agent, { _tag: "RevokeAgentToken", agentId }, { workspaceId, meta })
      expect((yield* settle(revokeAgain, log)).events).toEqual([])
      expect((yield* log.head).position).toBe(3)
    }))
})
