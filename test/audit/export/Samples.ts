/**
 * One sample stored event per catalog type (plus one of a type this build does not know), hash-chained from genesis
 * as the log would store them, with fixed ids and times so that golden files stay byte for byte stable. Samples are
 * written as the JSON the log stores and decoded through the catalog, so a sample that stops matching its schema
 * fails here rather than in a golden file.
 */
import { createHash } from "node:crypto"
import { Either, Schema } from "effect"
import { type StoredEvent, UnknownEvent } from "../../../core/EventLog.ts"
import { decodeEventEither, EventMeta, type EventType } from "../../../core/Events.ts"
import { GENESIS_HASH, hashEnvelope, jsonbText } from "../../../core/HashChain.ts"

const id = (n: number) => `01956b3e-8a00-7c00-8000-${n.toString(16).padStart(12, "0")}`
const sha = (s: string) => createHash("sha256").update(s).digest("hex")

/** The ids the samples use. */
export const Ids = {
  workspace: id(0xa1),
  otherWorkspace: id(0xa2),
  agent: id(0xb1),
  otherAgent: id(0xb2),
  apiKey: id(0xc1),
  service: id(0xd1),
  tunnel: id(0xe1),
  share: id(0xf1),
  link: id(0xf2),
  hub: "hub-7f3a"
} as const

const t = (minute: number) => new Date(Date.UTC(2025, 2, 1, 12, minute, 0, 250)).toISOString()

interface Sample {
  readonly stream: string
  readonly workspace: string | null
  readonly data: Record<string, unknown>
  readonly meta: Record<string, unknown>
}

const admin = { actor: { kind: "admin", id: "operator" }, sourceIp: "198.51.100.10", userAgent: "connect-cli/0.1.0", hubId: Ids.hub }
const asAgent = (extra: Record<string, unknown> = {}) => ({ actor: { kind: "agent", id: Ids.agent }, hubId: Ids.hub, ...extra })
const system = { actor: { kind: "system" }, hubId: Ids.hub }
const agentStream = `agent-${Ids.agent}`

/** The payload and envelope of one sample per catalog type, in the order they are chained. */
export const samples: { readonly [T in EventType]: Sample } = {
  WorkspaceCreated: {
    stream: `workspace-${Ids.workspace}`,
    workspace: Ids.workspace,
    data: { workspaceId: Ids.workspace, name: "acme" },
    meta: { ...admin, correlationId: "req-0001" }
  },
  ApiKeyCreated: {
    stream: `apikey-${Ids.apiKey}`,
    workspace: Ids.workspace,
    data: { apiKeyId: Ids.apiKey, workspaceId: Ids.workspace, name: "ci", prefix: "pc_AbC123", keyHash: sha("key") },
    meta: admin
  },
  ApiKeyRevoked: { stream: `apikey-${Ids.apiKey}`, workspace: Ids.workspace, data: { apiKeyId: Ids.apiKey }, meta: admin },
  ApiKeyAuthFailed: {
    stream: `apikey-${Ids.apiKey}`,
    workspace: Ids.workspace,
    data: {
      apiKeyId: Ids.apiKey,
      keyPrefix: "pc_AbC12",
      reason: "revoked_api_key",
      ip: "198.51.100.3",
      count: 42,
      firstAt: t(1),
      lastAt: t(2)
    },
    meta: { ...system, sourceIp: "198.51.100.3" }
  },
  AgentProvisioned: {
    stream: agentStream,
    workspace: Ids.workspace,
    data: { agentId: Ids.agent, label: "db-host", tokenHash: sha("token-1"), expiresAt: t(30) },
    meta: admin
  },
  AgentTokenRotated: {
    stream: agentStream,
    workspace: Ids.workspace,
    data: { agentId: Ids.agent, newTokenHash: sha("token-2"), newExpiresAt: t(40), oldValidUntil: t(35) },
    meta: asAgent({ sourceIp: "203.0.113.7" })
  },
  AgentTokenRevoked: {
    stream: agentStream,
    workspace: Ids.workspace,
    data: { agentId: Ids.agent, reason: "laptop stolen" },
    meta: admin
  },
  AgentConnected: {
    stream: agentStream,
    workspace: Ids.workspace,
    data: { agentId: Ids.agent, ip: "203.0.113.7", userAgent: "connect/0.1.0 linux-x64", transport: "msgpack" },
    meta: asAgent({ sourceIp: "203.0.113.7", userAgent: "connect/0.1.0 linux-x64" })
  },
  AgentDisconnected: {
    stream: agentStream,
    workspace: Ids.workspace,
    data: { agentId: Ids.agent, reason: "heartbeat_timeout", durationMs: 3_600_000 },
    meta: system
  },
  AgentIpChanged: {
    stream: agentStream,
    workspace: Ids.workspace,
    data: { agentId: Ids.agent, previousIp: "203.0.113.7", newIp: "2001:db8::1" },
    meta: asAgent({ sourceIp: "2001:db8::1" })
  },
  AgentAuthFailed: {
    stream: agentStream,
    workspace: Ids.workspace,
    data: { agentId: Ids.agent, tokenPrefix: "0a1b2c3d", reason: "expired_token", ip: "198.51.100.2" },
    meta: { ...system, sourceIp: "198.51.100.2" }
  },
  AgentAllowListSet: {
    stream: agentStream,
    workspace: Ids.workspace,
    data: { agentId: Ids.agent, allow: ["10.0.0.0/8", "db.internal"] },
    meta: admin
  },
  ServiceExposed: {
    stream: `service-${Ids.service}`,
    workspace: Ids.workspace,
    data: { serviceId: Ids.service, agentId: Ids.agent, name: "prod-db", targetHost: "localhost", targetPort: 5432 },
    meta: asAgent({ sourceIp: "203.0.113.7" })
  },
  ServiceUnexposed: {
    stream: `service-${Ids.service}`,
    workspace: Ids.workspace,
    data: { serviceId: Ids.service, agentId: Ids.agent, name: "prod-db" },
    meta: asAgent({ sourceIp: "203.0.113.7" })
  },
  ServiceReleased: {
    stream: `service-${Ids.service}`,
    workspace: Ids.workspace,
    data: { serviceId: Ids.service, agentId: Ids.agent, name: "prod-db", reason: "admin" },
    meta: admin
  },
  TunnelOpened: {
    stream: `tunnel-${Ids.tunnel}`,
    workspace: Ids.workspace,
    data: {
      tunnelId: Ids.tunnel,
      serviceId: Ids.service,
      serviceName: "prod-db",
      fromAgentId: Ids.otherAgent,
      viaShareId: Ids.share,
      toAgentId: Ids.agent
    },
    meta: { actor: { kind: "agent", id: Ids.otherAgent }, sourceIp: "192.0.2.20", hubId: Ids.hub }
  },
  TunnelClosed: {
    stream: `tunnel-${Ids.tunnel}`,
    workspace: Ids.workspace,
    data: {
      tunnelId: Ids.tunnel,
      serviceId: Ids.service,
      bytesUp: 1234,
      bytesDown: 5_000_000_000,
      durationMs: 61_000,
      reason: "end"
    },
    meta: system
  },
  ReachDenied: {
    stream: agentStream,
    workspace: Ids.workspace,
    data: {
      requestedName: "payroll",
      fromAgentId: Ids.agent,
      reason: "not_found",
      count: 7,
      firstAt: t(3),
      lastAt: t(4),
      sample: ["payroll", "hr-db"]
    },
    meta: system
  },
  ShareCreated: {
    stream: `share-${Ids.share}`,
    workspace: Ids.workspace,
    data: {
      shareId: Ids.share,
      codeHash: sha("share-code"),
      services: [{ serviceId: Ids.service, name: "prod-db" }],
      expiresAt: t(50),
      permissions: ["reach"]
    },
    meta: admin
  },
  ShareRevoked: { stream: `share-${Ids.share}`, workspace: Ids.workspace, data: { shareId: Ids.share }, meta: admin },
  ShareAccessed: {
    stream: `share-${Ids.share}`,
    workspace: Ids.workspace,
    data: { shareId: Ids.share, byWorkspaceId: Ids.otherWorkspace, outcome: "denied", reason: "expired" },
    meta: { actor: { kind: "apikey", id: id(0xc2) }, sourceIp: "192.0.2.30", hubId: Ids.hub }
  },
  ShareJoined: {
    stream: `share-${Ids.share}`,
    workspace: Ids.workspace,
    data: { shareId: Ids.share, agentId: Ids.agent, peerWorkspaceId: Ids.otherWorkspace },
    meta: { actor: { kind: "agent", id: Ids.agent }, sourceIp: "192.0.2.30", hubId: Ids.hub }
  },
  LinkCreated: {
    stream: `link-${Ids.link}`,
    workspace: Ids.workspace,
    data: {
      linkId: Ids.link,
      tokenHash: sha("link-token"),
      serviceId: Ids.service,
      expiresAt: t(55),
      methods: ["GET", "HEAD"],
      pathPrefixes: ["/api/", "/health"],
      rateLimitPerMinute: 60
    },
    meta: admin
  },
  LinkRevoked: { stream: `link-${Ids.link}`, workspace: Ids.workspace, data: { linkId: Ids.link }, meta: admin },
  LinkAccessed: {
    stream: `link-${Ids.link}`,
    workspace: Ids.workspace,
    data: {
      linkId: Ids.link,
      ip: "192.0.2.44",
      method: "POST",
      path: "/api/items",
      status: 405,
      outcome: "denied",
      reason: "method_not_allowed",
      bytes: 0,
      durationMs: 3
    },
    meta: { actor: { kind: "public" }, sourceIp: "192.0.2.44", userAgent: "curl/8.5.0", hubId: Ids.hub }
  },
  SigningKeyRotated: {
    stream: "hub-checkpoints",
    workspace: null,
    data: { origin: "hub.example.com/connect", previousKeyId: "0a1b2c3d", keyId: "4e5f6a7b", publicKey: "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=" },
    meta: admin
  },
  CheckpointSigned: {
    stream: "hub-checkpoints",
    workspace: null,
    data: { origin: "hub.example.com/connect", position: 24, headHash: sha("head-24"), keyId: "4e5f6a7b" },
    meta: system
  },
  AuditRead: {
    stream: `apikey-${Ids.apiKey}`,
    workspace: Ids.workspace,
    data: {
      kind: "export",
      apiKeyId: Ids.apiKey,
      filters: { format: "cef", since: "2h", note: "a|b=c\\d]\n" },
      count: 26,
      fromPosition: 1,
      toPosition: 26
    },
    meta: { actor: { kind: "apikey", id: Ids.apiKey }, sourceIp: "198.51.100.10", userAgent: "connect-cli/0.1.0", hubId: Ids.hub }
  },
  ConsoleSignedIn: {
    stream: `console-${Ids.apiKey}`,
    workspace: Ids.workspace,
    data: { apiKeyId: Ids.apiKey, session: "3f2a9c41d07be658", scope: "workspace", expiresAt: t(70) },
    meta: { actor: { kind: "apikey", id: Ids.apiKey }, sourceIp: "198.51.100.10", userAgent: "Mozilla/5.0 <b>x</b>", hubId: Ids.hub }
  },
  ConsoleSignedOut: {
    stream: `console-${Ids.apiKey}`,
    workspace: Ids.workspace,
    data: { apiKeyId: Ids.apiKey, session: "3f2a9c41d07be658", reason: "signed_out", durationMs: 754000 },
    meta: { actor: { kind: "apikey", id: Ids.apiKey }, sourceIp: "198.51.100.10", userAgent: "Mozilla/5.0 <b>x</b>", hubId: Ids.hub }
  },
  ConsoleSignInFailed: {
    stream: "console-signin",
    workspace: null,
    data: { keyPrefix: "pc_AbC12", reason: "unknown_api_key", ip: "203.0.113.9", count: 17, firstAt: t(3), lastAt: t(4) },
    meta: { actor: { kind: "public" }, sourceIp: "203.0.113.9", hubId: Ids.hub }
  }
}

/** The type of the unknown sample: what a newer build might write. */
export const UnknownType = "FutureThingHappened"

const unknownSample: Sample = {
  stream: "hub",
  workspace: null,
  data: { origin: "connect.example/log", position: 24, witness: { name: "w1", signature: "c2lnbmF0dXJl" } },
  meta: system
}

/** What a stored event is made of before it is chained. */
export interface Unchained {
  readonly stream: string
  readonly version: number
  readonly workspaceId: string | null
  readonly type: string
  readonly data: unknown
  readonly meta: Record<string, unknown>
  readonly recordedAt: Date
  readonly id?: string
}

const decodeMeta = Schema.decodeUnknownSync(EventMeta)

/**
 * Chains events after `prev` (genesis by default) from position `after + 1`, as the log would store them: payloads as
 * jsonb text, each hash over its predecessor's. A type the catalog does not know becomes an `UnknownEvent`; the meta
 * must decode as `EventMeta` and the data as its type's schema (a bad sample is a test bug and throws).
 */
export const chain = (
  events: ReadonlyArray<Unchained>,
  options: { readonly after?: number; readonly prev?: Uint8Array } = {}
): Array<StoredEvent> => {
  let prev = options.prev ?? GENESIS_HASH
  const after = options.after ?? 0
  return events.map((e, i) => {
    const decoded = decodeEventEither(e.type, e.data)
    const event = Either.isRight(decoded)
      ? decoded.right
      : decoded.left._tag === "UnknownEventType"
      ? new UnknownEvent({ type: e.type, data: e.data })
      : (() => {
        throw new Error(`sample ${e.type} does not decode: ${decoded.left.message}`)
      })()
    const envelope = {
      position: after + i + 1,
      id: e.id ?? `01956b3e-8a00-7c00-9000-${(after + i + 1).toString(16).padStart(12, "0")}`,
      stream: e.stream,
      version: e.version,
      workspaceId: e.workspaceId,
      type: e.type,
      dataJson: jsonbText(e.data),
      metaJson: jsonbText(e.meta),
      recordedAt: e.recordedAt,
      prevHash: prev
    }
    const hash = hashEnvelope(envelope)
    prev = hash
    return { ...envelope, hash, event, meta: decodeMeta(e.meta) }
  })
}

const versions = new Map<string, number>()
const nextVersion = (stream: string) => {
  const v = (versions.get(stream) ?? 0) + 1
  versions.set(stream, v)
  return v
}

const unchained = (type: string, sample: Sample, i: number): Unchained => ({
  stream: sample.stream,
  version: nextVersion(sample.stream),
  workspaceId: sample.workspace,
  type,
  data: sample.data,
  meta: sample.meta,
  recordedAt: new Date(Date.UTC(2025, 2, 1, 13, 0, i, 125))
})

const entries = Object.entries(samples) as Array<[EventType, Sample]>

/** Every sample, chained from genesis: one per catalog type, then the unknown one. */
export const stored: ReadonlyArray<StoredEvent> = chain([
  ...entries.map(([type, sample], i) => unchained(type, sample, i)),
  unchained(UnknownType, unknownSample, entries.length)
])

/** The chained sample of a type (catalog type or {@link UnknownType}). */
export const sampleOf = (type: string): StoredEvent => {
  const found = stored.find((e) => e.type === type)
  if (found === undefined) throw new Error(`no sample of ${type}`)
  return found
}
