/**
 * Identifiers: time-ordered UUIDv7 generation, the branded id schemas of every aggregate, and the names of the
 * event-log streams those aggregates write to.
 */
import { randomFillSync } from "node:crypto"
import { Schema } from "effect"

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"))

// Random bytes are drawn in blocks: one randomFillSync per 256 ids instead of one per id keeps uuidv7() off the
// syscall path when the event log appends thousands of events per second.
const POOL_IDS = 256
const pool = new Uint8Array(POOL_IDS * 10)
let poolOffset = pool.length

let lastMs = -1
let counter = 0

/**
 * Returns a new RFC 9562 UUIDv7: 48-bit unix-millisecond timestamp, version 7, variant 10, random bits from
 * node:crypto; ids made by this process are strictly increasing, even within one millisecond.
 */
export const uuidv7 = (): string => {
  if (poolOffset + 10 > pool.length) {
    randomFillSync(pool)
    poolOffset = 0
  }
  const r = poolOffset
  poolOffset += 10

  // Monotonicity (RFC 9562 §6.2, method 1): rand_a is a 12-bit counter seeded randomly in its lower half on each new
  // millisecond, leaving at least 2048 increments before it overflows; on overflow, or when the clock steps back, we
  // borrow the next millisecond rather than emit an id that sorts before the previous one.
  let ms = Date.now()
  if (ms > lastMs) {
    lastMs = ms
    counter = ((pool[r]! << 8) | pool[r + 1]!) & 0x7ff
  } else {
    counter++
    if (counter > 0xfff) {
      lastMs++
      counter = ((pool[r]! << 8) | pool[r + 1]!) & 0x7ff
    }
    ms = lastMs
  }

  const hi = Math.floor(ms / 0x1_0000_0000)
  const lo = ms >>> 0
  return (
    HEX[(hi >>> 8) & 0xff]! +
    HEX[hi & 0xff]! +
    HEX[lo >>> 24]! +
    HEX[(lo >>> 16) & 0xff]! +
    "-" +
    HEX[(lo >>> 8) & 0xff]! +
    HEX[lo & 0xff]! +
    "-" +
    HEX[0x70 | (counter >>> 8)]! +
    HEX[counter & 0xff]! +
    "-" +
    HEX[0x80 | (pool[r + 2]! & 0x3f)]! +
    HEX[pool[r + 3]!]! +
    "-" +
    HEX[pool[r + 4]!]! +
    HEX[pool[r + 5]!]! +
    HEX[pool[r + 6]!]! +
    HEX[pool[r + 7]!]! +
    HEX[pool[r + 8]!]! +
    HEX[pool[r + 9]!]!
  )
}

/** A workspace: the isolation boundary owning agents, services, shares, links and API keys. */
export const WorkspaceId = Schema.UUID.pipe(Schema.brand("WorkspaceId"))
/** A workspace: the isolation boundary owning agents, services, shares, links and API keys. */
export type WorkspaceId = typeof WorkspaceId.Type

/** An agent: one machine running `connect up` with its own token. */
export const AgentId = Schema.UUID.pipe(Schema.brand("AgentId"))
/** An agent: one machine running `connect up` with its own token. */
export type AgentId = typeof AgentId.Type

/** A service: a named TCP target exposed by an agent. */
export const ServiceId = Schema.UUID.pipe(Schema.brand("ServiceId"))
/** A service: a named TCP target exposed by an agent. */
export type ServiceId = typeof ServiceId.Type

/** A tunnel: one relayed connection from a reacher to a service. */
export const TunnelId = Schema.UUID.pipe(Schema.brand("TunnelId"))
/** A tunnel: one relayed connection from a reacher to a service. */
export type TunnelId = typeof TunnelId.Type

/** A share: a code granting another workspace reach to some services. */
export const ShareId = Schema.UUID.pipe(Schema.brand("ShareId"))
/** A share: a code granting another workspace reach to some services. */
export type ShareId = typeof ShareId.Type

/** A link: a time-limited public HTTP URL onto one service. */
export const LinkId = Schema.UUID.pipe(Schema.brand("LinkId"))
/** A link: a time-limited public HTTP URL onto one service. */
export type LinkId = typeof LinkId.Type

/** An API key: a hashed `pc_` credential for the HTTP API of one workspace. */
export const ApiKeyId = Schema.UUID.pipe(Schema.brand("ApiKeyId"))
/** An API key: a hashed `pc_` credential for the HTTP API of one workspace. */
export type ApiKeyId = typeof ApiKeyId.Type

/** Names of the event-log streams, one per aggregate instance: `<kind>-<uuid>`. */
export const Streams = {
  /** The stream of one workspace's own events (creation, API keys). */
  workspace: (id: WorkspaceId): string => `workspace-${id}`,
  /** The stream of one agent (provisioning, tokens, connections, auth failures). */
  agent: (id: AgentId): string => `agent-${id}`,
  /** The stream of one service (expose, unexpose). */
  service: (id: ServiceId): string => `service-${id}`,
  /** The stream of one tunnel (opened, closed). */
  tunnel: (id: TunnelId): string => `tunnel-${id}`,
  /** The stream of one share (created, accessed, revoked). */
  share: (id: ShareId): string => `share-${id}`,
  /** The stream of one public link (created, accessed, revoked). */
  link: (id: LinkId): string => `link-${id}`,
  /** The stream of one API key (created, revoked). */
  apiKey: (id: ApiKeyId): string => `apikey-${id}`
} as const
