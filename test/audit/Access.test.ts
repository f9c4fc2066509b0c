/**
 * `connect audit access`, folded over a memory log: who could reach a service at an instant — its workspace's agents
 * online then with a valid token (not revoked, not expired, a replaced connection still online), shares and links
 * valid then — as of the last event recorded at or before that instant; the other workspace's service of the same
 * name and its agents never counted; unknown, ambiguous and hostile questions refused clearly.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, TestClock } from "effect"
import { type Access, AccessError, fold, parseQuery, readFromLog } from "../../audit/Access.ts"
import { EventLog } from "../../core/EventLog.ts"
import * as E from "../../core/Events.ts"
import { AgentId, LinkId, ShareId, Streams, uuidv7, WorkspaceId } from "../../core/Ids.ts"
import * as MemoryEventLog from "../../core/MemoryEventLog.ts"
import { serviceIdFor } from "../../core/ServiceDecider.ts"

const A = WorkspaceId.make(uuidv7())
const B = WorkspaceId.make(uuidv7())
const agent = () => AgentId.make(uuidv7())
const dbBox = agent()
const laptop = agent()
const old = agent()
const expiring = agent()
const stranger = agent()
const share = ShareId.make(uuidv7())
const link1 = LinkId.make(uuidv7())
const link2 = LinkId.make(uuidv7())
const prodA = serviceIdFor(A, "prod-db")
const prodB = serviceIdFor(B, "prod-db")
const HASH = "a".repeat(64) as E.Sha256Hex
const t = (hhmm: string) => new Date(`2026-11-30T${hhmm}:00Z`)
const meta = new E.EventMeta({ actor: { kind: "admin" } })

/** Appends `event` to `stream` of `workspace` at `hhmm` (the memory log stamps the test clock's time). */
const at = (hhmm: string, workspace: string, stream: string, event: E.Event) =>
  Effect.gen(function*() {
    yield* TestClock.setTime(t(hhmm).getTime())
    yield* (yield* EventLog).append(stream, [event], { expectedVersion: "any", workspaceId: workspace, meta })
  })

const provision = (hhmm: string, workspace: string, agentId: AgentId, label: string, expiresAt = t("23:00")) =>
  at(hhmm, workspace, Streams.agent(agentId), new E.AgentProvisioned({ agentId, label, tokenHash: HASH, expiresAt }))
const connect = (hhmm: string, workspace: string, agentId: AgentId) =>
  at(hhmm, workspace, Streams.agent(agentId), new E.AgentConnected({ agentId, ip: "10.0.0.1", userAgent: "t", transport: "ws" }))
const disconnect = (hhmm: string, workspace: string, agentId: AgentId, reason: typeof E.DisconnectReason.Type) =>
  at(hhmm, workspace, Streams.agent(agentId), new E.AgentDisconnected({ agentId, reason, durationMs: 1 }))
const expose = (hhmm: string, workspace: string, agentId: AgentId) =>
  at(hhmm, workspace, Streams.service(serviceIdFor(workspace, "prod-db")), new E.ServiceExposed({
    serviceId: serviceIdFor(workspace, "prod-db"), agentId, name: "prod-db", targetHost: "127.0.0.1", targetPort: 5432
  }))
const createLink = (hhmm: string, linkId: LinkId, expiresAt: Date) =>
  at(hhmm, A, Streams.link(linkId), new E.LinkCreated({
    linkId, tokenHash: HASH, serviceId: prodA, expiresAt, methods: ["GET"], pathPrefixes: ["/"], rateLimitPerMinute: 60
  }))

/** The story of both workspaces, 10:00 to 12:00 on 2026-11-30. */
const story = Effect.gen(function*() {
  yield* provision("10:00", A, dbBox, "db-box")
  yield* provision("10:00", A, laptop, "laptop")
  yield* provision("10:00", A, old, "old")
  yield* provision("10:00", A, expiring, "expiring", t("10:30"))
  yield* provision("10:00", B, stranger, "stranger")
  for (const a of [dbBox, laptop, old, expiring]) yield* connect("10:05", A, a)
  yield* connect("10:05", B, stranger)
  yield* expose("10:06", A, dbBox)
  yield* expose("10:06", B, stranger)
  yield* at("10:10", A, Streams.share(share), new E.ShareCreated({
    shareId: share, codeHash: HASH, services: [{ serviceId: prodA, name: "prod-db" }], expiresAt: t("12:00"), permissions: ["reach"]
  }))
  yield* createLink("10:10", link1, t("10:20"))
  yield* createLink("10:10", link2, t("23:00"))
  yield* at("10:15", A, Streams.link(link2), new E.LinkRevoked({ linkId: link2 }))
  yield* at("10:40", A, Streams.agent(old), new E.AgentTokenRevoked({ agentId: old }))
  yield* disconnect("11:00", A, laptop, "closed")
  yield* connect("11:29", A, dbBox)
  yield* disconnect("11:30", A, dbBox, "replaced")
  yield* at("12:00", A, Streams.service(prodA), new E.ServiceUnexposed({ serviceId: prodA, agentId: dbBox, name: "prod-db" }))
})

/** Who could reach `service` at `hhmm`, asked in `workspace` (A unless told; null: in none). */
const ask = (hhmm: string, service = "prod-db", workspace: string | null = A) =>
  readFromLog({ service, at: t(hhmm), ...(workspace !== null && { workspace }) })
const labels = (access: Access) => access.agents.map((a) => a.label)

describe("audit access", () => {
  it.effect("answers from the log as it was: agents online with a valid token, shares and links valid then", () =>
    Effect.gen(function*() {
      yield* story
      const early = yield* ask("10:07")
      expect(early.asOf).toEqual({ position: 12, recordedAt: t("10:06") })
      expect(early.service).toMatchObject({ serviceId: prodA, workspaceId: A, exposed: true, agentId: dbBox, agentLabel: "db-box", agentOnline: true, target: "127.0.0.1:5432" })
      expect(early.reachable).toBe(true)
      expect(labels(early)).toEqual(["db-box", "expiring", "laptop", "old"])
      expect([early.shares, early.links]).toEqual([[], []])

      const granted = yield* ask("10:12")
      expect(granted.shares.map((s) => [s.id, s.expiresAt, s.detail])).toEqual([[share, t("12:00"), { permissions: ["reach"] }]])
      expect(granted.links.map((l) => l.id)).toEqual([link1, link2])

      // Revoked, expired token, expired link, revoked link: each drops out from its moment on.
      const later = yield* ask("10:45")
      expect(labels(later)).toEqual(["db-box", "laptop"])
      expect(later.shares.map((s) => s.id)).toEqual([share])
      expect(later.links).toEqual([])

      // Disconnected: gone; a connection replaced by a newer one: still online.
      const afternoon = yield* ask("11:45")
      expect(afternoon.asOf.recordedAt).toEqual(t("11:30"))
      expect(labels(afternoon)).toEqual(["db-box"])
      expect(afternoon.reachable).toBe(true)

      // Unexposed: nobody could reach it, and the share had expired.
      const gone = yield* ask("12:30")
      expect(gone).toMatchObject({ reachable: false, unreachable: "not_exposed", shares: [] })
    }).pipe(Effect.provide(MemoryEventLog.layer)))

  it.effect("the same name in another workspace is another service, with its own agents", () =>
    Effect.gen(function*() {
      yield* story
      const inB = yield* ask("10:07", "prod-db", B)
      expect(inB.service).toMatchObject({ serviceId: prodB, workspaceId: B, agentLabel: "stranger" })
      expect(labels(inB)).toEqual(["stranger"])
      // By id, the workspace follows from it.
      expect((yield* ask("10:07", prodA, null)).service.workspaceId).toBe(A)
      const ambiguous = yield* Effect.flip(ask("10:07", "prod-db", null))
      expect(ambiguous).toMatchObject({ reason: "Ambiguous" })
      expect(ambiguous.message).toContain(A)
      expect(ambiguous.message).toContain("--workspace")
    }).pipe(Effect.provide(MemoryEventLog.layer)))

  it.effect("an unknown service names the near ones; before the first event there is no answer", () =>
    Effect.gen(function*() {
      yield* story
      const typo = yield* Effect.flip(ask("10:07", "prod-bd"))
      expect(typo).toBeInstanceOf(AccessError)
      expect(typo.message).toBe(`no service "prod-bd" in workspace ${A} had been exposed as of position 12 (2026-11-30T10:06:00.000Z); did you mean prod-db?`)
      // Not exposed yet at 10:05.
      expect((yield* Effect.flip(ask("10:05"))).reason).toBe("NotFound")
      expect(yield* Effect.flip(ask("09:00"))).toMatchObject({ reason: "EmptyLog" })
    }).pipe(Effect.provide(MemoryEventLog.layer)))

  it.effect("folds the same state whatever order a reader hands the events in", () =>
    Effect.gen(function*() {
      yield* story
      const events = yield* (yield* EventLog).readAll(0, 1_000)
      expect(fold([...events].reverse())).toEqual(fold(events))
    }).pipe(Effect.provide(MemoryEventLog.layer)))

  it("reads the question as the audit filters read theirs, hostile values refused", () => {
    const now = new Date("2026-11-30T12:00:00Z")
    const ok = (raw: Parameters<typeof parseQuery>[0]) => Either.getOrThrow(parseQuery(raw, now))
    const error = (raw: Parameters<typeof parseQuery>[0]) => Either.flip(parseQuery(raw, now)).pipe(Either.getOrThrow).message
    expect(ok({ service: "prod-db", at: "2h" })).toEqual({ service: "prod-db", at: new Date("2026-11-30T10:00:00Z") })
    expect(ok({ service: "prod-db", at: "2026-11-29T14:00", workspace: A.toUpperCase() }))
      .toEqual({ service: "prod-db", at: new Date("2026-11-29T14:00:00Z"), workspace: A })
    expect(error({ service: "prod-db", at: "yesterday" })).toMatch(/^--at: "yesterday" is not a time/)
    expect(error({ service: "prod\u0000db", at: "2h" })).toBe("--service: contains a control character")
    expect(error({ service: "x".repeat(1_000_000), at: "2h" })).toMatch(/^--service: too long \(1000000 characters/)
    expect(error({ service: "prod db;", at: "2h" })).toMatch(/^--service: "prod db;" is neither a service id nor a service name/)
    expect(error({ service: "prod-db", at: "2h", workspace: "nope" })).toMatch(/^--workspace: "nope" is not a workspace id/)
  })
})
