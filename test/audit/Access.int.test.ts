/**
 * `connect audit access` on a real log: the few rows audit/PgAccess.ts reads fold to the answer that folding the whole
 * log gives, at every instant of a story (agents connecting, replaced, disconnecting, revoked, a token expiring, a
 * share and links created and revoked, the service unexposed) with a second workspace's service of the same name and
 * tunnel traffic around it; unknown, ambiguous and too-early questions refused as by the fold.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import * as Access from "../../audit/Access.ts"
import * as PgAccess from "../../audit/PgAccess.ts"
import { EventLog } from "../../core/EventLog.ts"
import * as E from "../../core/Events.ts"
import { AgentId, LinkId, ShareId, Streams, TunnelId, uuidv7, WorkspaceId } from "../../core/Ids.ts"
import { serviceIdFor } from "../../core/ServiceDecider.ts"
import * as HubLog from "../support/HubLog.ts"

const A = WorkspaceId.make(uuidv7())
const B = WorkspaceId.make(uuidv7())
const HASH = "c".repeat(64) as E.Sha256Hex
const meta = new E.EventMeta({ actor: { kind: "admin" } })
const prodA = serviceIdFor(A, "prod-db")
const prodB = serviceIdFor(B, "prod-db")
const later = () => new Date(Date.now() + 86_400_000)

/** Appends to the log and returns the instant it was recorded at. */
const append = (workspace: string, stream: string, ...events: ReadonlyArray<E.Event>) =>
  Effect.gen(function*() {
    const log = yield* EventLog
    const { lastPosition } = yield* log.append(stream, events, { expectedVersion: "any", workspaceId: workspace, meta })
    return (yield* log.readAll(lastPosition - 1, 1))[0]!.recordedAt
  })

const agent = (workspace: string, label: string, expiresAt = later()) =>
  Effect.map(
    (() => {
      const agentId = AgentId.make(uuidv7())
      return Effect.as(append(workspace, Streams.agent(agentId), new E.AgentProvisioned({ agentId, label, tokenHash: HASH, expiresAt })), agentId)
    })(),
    (agentId) => ({
      agentId,
      connect: () => append(workspace, Streams.agent(agentId), new E.AgentConnected({ agentId, ip: "10.1.2.3", userAgent: "t", transport: "msgpack" })),
      disconnect: (reason: typeof E.DisconnectReason.Type) =>
        append(workspace, Streams.agent(agentId), new E.AgentDisconnected({ agentId, reason, durationMs: 5 })),
      event: (event: E.Event) => append(workspace, Streams.agent(agentId), event)
    })
  )

const expose = (workspace: string, agentId: AgentId) =>
  append(workspace, Streams.service(serviceIdFor(workspace, "prod-db")), new E.ServiceExposed({
    serviceId: serviceIdFor(workspace, "prod-db"), agentId, name: "prod-db", targetHost: "10.0.0.5", targetPort: 5432
  }))

/** Tunnel traffic on a service: rows the access reader must not need. */
const traffic = (workspace: string, serviceId: string, agentId: AgentId) =>
  Effect.gen(function*() {
    for (let i = 0; i < 20; i++) {
      const tunnelId = TunnelId.make(uuidv7())
      yield* append(workspace, Streams.tunnel(tunnelId),
        new E.TunnelOpened({ tunnelId, serviceId: serviceId as never, serviceName: "prod-db", fromAgentId: agentId, toAgentId: agentId }),
        new E.TunnelClosed({ tunnelId, serviceId: serviceId as never, bytesUp: 1, bytesDown: 2, durationMs: 3, reason: "end" }))
    }
  })

/** The story; returns the instant of each step, the labels that could reach prod-db of A then. */
const story = Effect.gen(function*() {
  const steps: Array<[Date, ReadonlyArray<string>]> = []
  const step = (at: Date, labels: ReadonlyArray<string>) => steps.push([at, labels])
  const box = yield* agent(A, "db-box")
  const laptop = yield* agent(A, "laptop")
  const old = yield* agent(A, "old")
  // Valid through the first steps (a loaded machine takes seconds over them), expired before the fourth.
  const expiresAt = new Date(Date.now() + 8_000)
  const expiring = yield* agent(A, "expiring", expiresAt)
  const stranger = yield* agent(B, "stranger")
  yield* box.connect()
  yield* laptop.connect()
  yield* old.connect()
  yield* expiring.connect()
  yield* stranger.connect()
  step(yield* expose(A, box.agentId), ["db-box", "expiring", "laptop", "old"])
  yield* expose(B, stranger.agentId)
  yield* traffic(A, prodA, laptop.agentId)
  yield* traffic(B, prodB, stranger.agentId)
  const share = ShareId.make(uuidv7())
  const link1 = LinkId.make(uuidv7())
  const link2 = LinkId.make(uuidv7())
  yield* append(A, Streams.share(share), new E.ShareCreated({
    shareId: share, codeHash: HASH, services: [{ serviceId: prodA, name: "prod-db" }], expiresAt: later(), permissions: ["reach"]
  }))
  for (const [i, linkId] of [link1, link2].entries()) {
    // Token hashes are unique (the links read model finds a link by its token's hash).
    yield* append(A, Streams.link(linkId), new E.LinkCreated({
      linkId, tokenHash: `${i}`.repeat(64) as E.Sha256Hex, serviceId: prodA, expiresAt: later(), methods: ["GET"], pathPrefixes: ["/"], rateLimitPerMinute: 60
    }))
  }
  step(yield* append(A, Streams.link(link2), new E.LinkRevoked({ linkId: link2 })), ["db-box", "expiring", "laptop", "old"])
  step(yield* old.event(new E.AgentTokenRevoked({ agentId: old.agentId })), ["db-box", "expiring", "laptop"])
  yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, Math.max(0, expiresAt.getTime() + 50 - Date.now()))))
  step(yield* box.connect(), ["db-box", "laptop"])
  step(yield* box.disconnect("replaced"), ["db-box", "laptop"])
  step(yield* laptop.disconnect("heartbeat_timeout"), ["db-box"])
  step(yield* box.event(new E.AgentAllowListSet({ agentId: box.agentId, allow: ["10.0.0.0/8"] })), ["db-box"])
  step(yield* append(A, Streams.share(share), new E.ShareRevoked({ shareId: share })), ["db-box"])
  step(yield* box.disconnect("closed"), [])
  step(yield* append(A, Streams.service(prodA), new E.ServiceUnexposed({ serviceId: prodA, agentId: box.agentId, name: "prod-db" })), [])
  return steps
})

/** What each reader answers: the answer, or the error's reason and message. */
const outcome = (effect: Effect.Effect<Access.Access, unknown, any>) =>
  Effect.map(Effect.either(effect), (e) =>
    Either.isRight(e) ? e.right : { error: (e.left as Access.AccessError).reason, message: (e.left as Access.AccessError).message })

describe("audit access on Postgres", () => {
  it.layer(HubLog.layer, { timeout: 120_000 })("over a story", (it) => {
    it.effect("reads few rows and answers what folding the whole log answers, at every step", () =>
      Effect.gen(function*() {
        const steps = yield* story
        const first = (yield* (yield* EventLog).readAll(0, 1))[0]!.recordedAt
        for (const [at, labels] of steps) {
          const access = yield* PgAccess.read({ service: "prod-db", workspace: A, at })
          expect(access.agents.map((a) => a.label), at.toISOString()).toEqual(labels)
          for (const query of [
            { service: "prod-db", workspace: A, at },
            { service: "prod-db", workspace: B, at },
            { service: prodA, at },
            { service: "prod-db", at },
            { service: "prod-bd", workspace: A, at }
          ]) {
            expect(yield* outcome(PgAccess.read(query)), JSON.stringify(query)).toEqual(yield* outcome(Access.readFromLog(query)))
          }
        }
        const [, , , , , , , , , last] = steps.map(([at]) => at)
        const end = yield* PgAccess.read({ service: "prod-db", workspace: A, at: last! })
        expect(end).toMatchObject({ reachable: false, unreachable: "not_exposed", shares: [], service: { allow: ["10.0.0.0/8"] } })
        const granted = yield* PgAccess.read({ service: "prod-db", workspace: A, at: steps[1]![0] })
        expect([granted.shares.length, granted.links.length, granted.reachable]).toEqual([1, 1, true])
        const inB = yield* PgAccess.read({ service: "prod-db", workspace: B, at: steps[1]![0] })
        expect(inB.agents.map((a) => a.label)).toEqual(["stranger"])
        expect([inB.shares, inB.links]).toEqual([[], []])

        expect(yield* outcome(PgAccess.read({ service: "prod-db", at: last! }))).toMatchObject({ error: "Ambiguous" })
        expect(yield* outcome(PgAccess.read({ service: "prod-bd", workspace: A, at: last! })))
          .toMatchObject({ error: "NotFound", message: expect.stringMatching(/did you mean prod-db\?$/) })
        expect(yield* outcome(PgAccess.read({ service: "prod-db", at: new Date(first.getTime() - 1) })))
          .toMatchObject({ error: "EmptyLog" })
      }))
  })
})
