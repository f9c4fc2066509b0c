import { assert, describe, it } from "@effect/vitest"
import { createHash } from "node:crypto"
import { Effect, Schema } from "effect"
import * as Events from "../../core/Events.ts"
import {
  AgentId,
  ApiKeyId,
  LinkId,
  ServiceId,
  ShareId,
  Streams,
  TunnelId,
  uuidv7,
  WorkspaceId
} from "../../core/Ids.ts"

const sha256 = (secret: string) => Events.Sha256Hex.make(createHash("sha256").update(secret).digest("hex"))

const workspaceId = WorkspaceId.make(uuidv7())
const agentId = AgentId.make(uuidv7())
const otherAgentId = AgentId.make(uuidv7())
const serviceId = ServiceId.make(uuidv7())
const shareId = ShareId.make(uuidv7())
const linkId = LinkId.make(uuidv7())
const apiKeyId = ApiKeyId.make(uuidv7())
const tunnelId = TunnelId.make(uuidv7())
const at = new Date("2025-03-01T12:00:00.000Z")

/** One sample of every event type, with every optional field set where there is one. */
const samples: ReadonlyArray<Events.Event> = [
  new Events.WorkspaceCreated({ workspaceId, name: "acme" }),
  new Events.ApiKeyCreated({
    apiKeyId,
    workspaceId,
    name: "ci",
    prefix: "pc_AbC123",
    keyHash: sha256("pc_AbC123xxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
    scope: "operator"
  }),
  new Events.ApiKeyRevoked({ apiKeyId }),
  new Events.AgentProvisioned({ agentId, label: "laptop", tokenHash: sha256("t1"), expiresAt: at }),
  new Events.AgentTokenRotated({
    agentId,
    newTokenHash: sha256("t2"),
    newExpiresAt: new Date("2025-03-31T12:00:00.000Z"),
    oldValidUntil: new Date("2025-03-02T12:00:00.000Z")
  }),
  new Events.AgentTokenRevoked({ agentId, reason: "laptop stolen" }),
  new Events.AgentConnected({ agentId, ip: "203.0.113.7", userAgent: "connect/0.1.0 linux-x64", transport: "msgpack" }),
  new Events.AgentDisconnected({ agentId, reason: "heartbeat_timeout", durationMs: 3_600_000 }),
  new Events.AgentIpChanged({ agentId, previousIp: "203.0.113.7", newIp: "2001:db8::1" }),
  new Events.AgentAuthFailed({ agentId, tokenPrefix: "0a1b2c3d", reason: "expired_token", ip: "198.51.100.2" }),
  new Events.ApiKeyAuthFailed({
    keyPrefix: "pc_AbC12",
    reason: "rate_limited",
    ip: "198.51.100.3",
    count: 42,
    firstAt: new Date("2024-01-01T00:00:00Z"),
    lastAt: new Date("2024-01-01T00:00:09Z")
  }),
  new Events.ServiceExposed({ serviceId, agentId, name: "db", targetHost: "localhost", targetPort: 5432 }),
  new Events.ServiceUnexposed({ serviceId, agentId, name: "db" }),
  new Events.ServiceReleased({ serviceId, agentId, name: "db", reason: "agent_revoked" }),
  new Events.AgentAllowListSet({ agentId, allow: ["10.0.0.0/8", "db.internal"] }),
  new Events.TunnelOpened({
    tunnelId,
    serviceId,
    serviceName: "db",
    fromAgentId: otherAgentId,
    viaShareId: shareId,
    toAgentId: agentId
  }),
  new Events.TunnelClosed({
    tunnelId,
    serviceId,
    bytesUp: 1234,
    bytesDown: 5_000_000_000,
    durationMs: 61_000,
    reason: "end"
  }),
  new Events.ReachDenied({ requestedName: "db", fromAgentId: otherAgentId, reason: "cross_workspace" }),
  new Events.ShareCreated({
    shareId,
    codeHash: sha256("share-code"),
    services: [{ serviceId, name: "db" }],
    expiresAt: at,
    permissions: ["reach"]
  }),
  new Events.ShareRevoked({ shareId }),
  new Events.ShareJoined({ shareId, agentId, peerWorkspaceId: workspaceId }),
  new Events.ShareAccessed({ shareId, byWorkspaceId: workspaceId, outcome: "denied", reason: "expired" }),
  new Events.LinkCreated({
    linkId,
    tokenHash: sha256("link-token"),
    serviceId,
    expiresAt: at,
    methods: ["GET", "HEAD"],
    pathPrefixes: ["/api/", "/health"],
    rateLimitPerMinute: 60
  }),
  new Events.LinkRevoked({ linkId }),
  new Events.LinkAccessed({
    linkId,
    ip: "192.0.2.44",
    method: "POST",
    path: "/api/items",
    status: 405,
    outcome: "denied",
    reason: "method_not_allowed",
    bytes: 0,
    durationMs: 3
  }),
  new Events.CheckpointSigned({ origin: "hub.example/connect", position: 41, headHash: sha256("head"), keyId: "0a1b2c3d" }),
  new Events.SigningKeyRotated({
    origin: "hub.example/connect",
    previousKeyId: "0a1b2c3d",
    keyId: "4e5f6a7b",
    publicKey: Buffer.alloc(32, 7).toString("base64")
  }),
  new Events.AuditRead({
    kind: "query",
    apiKeyId,
    filters: { since: "2h", type: "tunnel" },
    count: 12,
    fromPosition: 3,
    toPosition: 40
  }),
  new Events.ConsoleSignedIn({ apiKeyId, session: "3f2a9c41d07be658", scope: "operator", expiresAt: new Date(at.getTime() + 3_600_000) }),
  new Events.ConsoleSignedOut({ apiKeyId, session: "3f2a9c41d07be658", reason: "expired", durationMs: 3_600_000 }),
  new Events.ConsoleSignInFailed({ keyPrefix: "pc_AbC12", reason: "rate_limited", ip: "203.0.113.9", count: 40, firstAt: at, lastAt: new Date(at.getTime() + 9_000) })
]

const throughJson = (event: Events.Event) => {
  const { type, data } = Events.encodeEvent(event)
  return { type, data: JSON.parse(JSON.stringify(data)) as unknown }
}

const isPlainJson = (value: unknown): boolean => {
  if (value === null) return true
  switch (typeof value) {
    case "string":
    case "boolean":
      return true
    case "number":
      return Number.isFinite(value)
    case "object":
      if (Array.isArray(value)) return value.every(isPlainJson)
      return Object.getPrototypeOf(value) === Object.prototype && Object.values(value).every(isPlainJson)
    default:
      return false
  }
}

const failure = <A, E>(effect: Effect.Effect<A, E>) => Effect.flip(effect)

describe("Events", () => {
  it("has one sample per event type", () => {
    assert.deepStrictEqual(samples.map((e) => e._tag).sort(), [...Events.eventTypes].sort())
    assert.strictEqual(new Set(Events.eventTypes).size, Events.eventTypes.length)
  })

  it.effect("round-trips every event type through encodeEvent, JSON and decodeEvent", () =>
    Effect.gen(function*() {
      const equivalent = Schema.equivalence(Events.Event)
      for (const event of samples) {
        const { type, data } = throughJson(event)
        assert.strictEqual(type, event._tag)
        const decoded = yield* Events.decodeEvent(type, data)
        assert.strictEqual(decoded.constructor, event.constructor)
        assert.isTrue(equivalent(decoded, event), `${event._tag} did not round-trip`)
        assert.deepStrictEqual(decoded, event)
        assert.deepStrictEqual(Events.encodeEvent(decoded), Events.encodeEvent(event))
      }
    }))

  it("encodes to plain JSON without _tag, timestamps as ISO strings", () => {
    for (const event of samples) {
      const { data } = Events.encodeEvent(event)
      assert.notProperty(data, "_tag", event._tag)
      assert.isTrue(isPlainJson(data), `${event._tag} data is not plain JSON`)
      assert.deepStrictEqual(JSON.parse(JSON.stringify(data)), data)
    }
    const provisioned = Events.encodeEvent(samples.find((e) => e._tag === "AgentProvisioned")!)
    assert.strictEqual(provisioned.data.expiresAt, "2025-03-01T12:00:00.000Z")
  })

  it("omits absent optional fields instead of encoding undefined", () => {
    const { data } = Events.encodeEvent(new Events.AgentAuthFailed({ reason: "unknown_token", ip: "192.0.2.1" }))
    assert.deepStrictEqual(data, { reason: "unknown_token", ip: "192.0.2.1" })
  })

  it("records secrets only as SHA-256 hashes and short prefixes", () => {
    const secretish = /(token|key|code|secret|password)/i
    for (const event of samples) {
      const { data } = Events.encodeEvent(event)
      for (const [field, value] of Object.entries(data)) {
        if (field === "keyId" || field === "previousKeyId") {
          // A signed-note key id: 4 bytes of a hash of the public key, public by design.
          assert.match(String(value), /^[0-9a-f]{8}$/, `${event._tag}.${field}`)
        } else if (field === "publicKey") {
          // An Ed25519 public key (32 bytes): what verifies checkpoints, published on purpose.
          assert.strictEqual(Buffer.from(String(value), "base64").length, 32, `${event._tag}.${field}`)
        } else if (field.endsWith("Hash")) {
          assert.match(String(value), /^[0-9a-f]{64}$/, `${event._tag}.${field}`)
        } else if (field.endsWith("Id")) {
          assert.isTrue(Schema.is(Schema.UUID)(value), `${event._tag}.${field}`)
        } else if (field.endsWith("Prefix") || field === "prefix") {
          assert.isAtMost(String(value).length, 11, `${event._tag}.${field}`)
        } else {
          assert.notMatch(field, secretish, `${event._tag}.${field} looks like a secret`)
        }
      }
    }
  })

  it("refuses to construct an event holding a whole key where a hash or prefix belongs", () => {
    assert.throws(() =>
      new Events.AgentProvisioned({
        agentId,
        label: "laptop",
        tokenHash: "pc_AbC123xxxxxxxxxxxxxxxxxxxxxxxxxxxx" as Events.Sha256Hex,
        expiresAt: at
      })
    )
    assert.throws(() =>
      new Events.ApiKeyCreated({
        apiKeyId,
        workspaceId,
        name: "ci",
        prefix: "pc_AbC123xxxxxxxxxxxxxxxxxxxxxx",
        keyHash: sha256("k")
      })
    )
  })

  it.effect("fails with UnknownEventType for a type outside the catalog", () =>
    Effect.gen(function*() {
      const error = yield* failure(Events.decodeEvent("TunnelTeleported", {}))
      assert.instanceOf(error, Events.UnknownEventType)
      assert.strictEqual(error._tag, "UnknownEventType")
      assert.include(error.message, "TunnelTeleported")
    }))

  it.effect("fails with EventDecodeError naming the bad field", () =>
    Effect.gen(function*() {
      const data = (tag: Events.EventType) => throughJson(samples.find((e) => e._tag === tag)!).data as object
      const cases: ReadonlyArray<[Events.EventType, Record<string, unknown>, string]> = [
        ["TunnelClosed", { ...data("TunnelClosed"), bytesUp: -1 }, "bytesUp"],
        ["TunnelClosed", { ...data("TunnelClosed"), durationMs: 1.5 }, "durationMs"],
        ["AgentProvisioned", { ...data("AgentProvisioned"), tokenHash: "z".repeat(64) }, "tokenHash"],
        ["AgentProvisioned", { ...data("AgentProvisioned"), expiresAt: "not a date" }, "expiresAt"],
        ["ServiceExposed", { ...data("ServiceExposed"), targetPort: 70000 }, "targetPort"],
        ["ServiceExposed", { ...data("ServiceExposed"), agentId: "agent-1" }, "agentId"],
        ["AgentAuthFailed", { ...data("AgentAuthFailed"), reason: "bad_luck" }, "reason"],
        ["LinkCreated", { ...data("LinkCreated"), methods: ["TRACE"] }, "methods"]
      ]
      for (const [type, bad, field] of cases) {
        const error = yield* failure(Events.decodeEvent(type, bad))
        assert.instanceOf(error, Events.EventDecodeError)
        assert.strictEqual(error.type, type)
        assert.include(error.message, field, `${type}: ${error.message}`)
      }
    }))

  it.effect("fails with EventDecodeError for data that is not an object, and ignores a stray _tag", () =>
    Effect.gen(function*() {
      for (const data of [null, "x", 3, [1]]) {
        const error = yield* failure(Events.decodeEvent("LinkRevoked", data))
        assert.instanceOf(error, Events.EventDecodeError)
      }
      const decoded = yield* Events.decodeEvent("LinkRevoked", { linkId, _tag: "ShareRevoked" })
      assert.instanceOf(decoded, Events.LinkRevoked)
    }))

  it("decodes EventMeta from plain JSON", () => {
    const meta = Schema.decodeUnknownSync(Events.EventMeta)({
      actor: { kind: "agent", id: agentId },
      sourceIp: "203.0.113.7",
      correlationId: "c-1"
    })
    assert.strictEqual(meta.actor.kind, "agent")
    assert.deepStrictEqual(Schema.encodeSync(Events.EventMeta)(meta), {
      actor: { kind: "agent", id: agentId },
      sourceIp: "203.0.113.7",
      correlationId: "c-1"
    })
    assert.throws(() => Schema.decodeUnknownSync(Events.EventMeta)({ actor: { kind: "root" } }))
  })
})

describe("Ids", () => {
  const uuidV7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

  it("makes RFC 9562 version-7, variant-10 UUIDs carrying the current time", () => {
    const before = Date.now()
    const id = uuidv7()
    const after = Date.now()
    assert.match(id, uuidV7)
    const ms = parseInt(id.slice(0, 8) + id.slice(9, 13), 16)
    assert.isAtLeast(ms, before)
    assert.isAtMost(ms, after + 1)
    assert.isTrue(Schema.is(WorkspaceId)(id))
  })

  it("makes unique ids that sort in creation order, within and across milliseconds", async () => {
    const ids: Array<string> = []
    for (let i = 0; i < 20_000; i++) ids.push(uuidv7())
    await new Promise((resolve) => setTimeout(resolve, 3))
    for (let i = 0; i < 100; i++) ids.push(uuidv7())
    for (const id of ids) assert.match(id, uuidV7)
    assert.strictEqual(new Set(ids).size, ids.length)
    assert.deepStrictEqual([...ids].sort(), ids)
  })

  it("names streams by aggregate", () => {
    assert.strictEqual(Streams.workspace(workspaceId), `workspace-${workspaceId}`)
    assert.strictEqual(Streams.agent(agentId), `agent-${agentId}`)
    assert.strictEqual(Streams.service(serviceId), `service-${serviceId}`)
    assert.strictEqual(Streams.tunnel(tunnelId), `tunnel-${tunnelId}`)
    assert.strictEqual(Streams.share(shareId), `share-${shareId}`)
    assert.strictEqual(Streams.link(linkId), `link-${linkId}`)
    assert.strictEqual(Streams.apiKey(apiKeyId), `apikey-${apiKeyId}`)
  })

  it("rejects a non-UUID where a branded id is expected", () => {
    assert.throws(() => AgentId.make("agent-1"))
  })
})
