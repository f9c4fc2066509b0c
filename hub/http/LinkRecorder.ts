/**
 * How public-link requests go on the log: every request let through is one `LinkAccessed` once its response is done;
 * refusals a stranger can repeat (rate limited, expired, revoked, a bad path, a path or method refused, the target
 * offline) are coalesced per link, address and reason: the first of a window is recorded at once, the rest as one
 * event with the count at the window's end. A token that matches no link is refused the same way, coalesced per address
 * alone on a stream of its own (`UNKNOWN_LINK_STREAM`, in no workspace: only the operator reads it), as failed
 * authentication is (AuthFailures.ts). Both are retried, then spooled while the log is unavailable, like
 * `TunnelClosed`: they record what already happened. Requests let through that end while an earlier group of their
 * records is being appended are appended together, one event each, in one append per link, address and user agent
 * (LinkGroups.ts). Text from the request is sanitised and capped before an event is built, so no request can make its
 * own record fail.
 */
import { Duration, Effect } from "effect"
import type { Schedule, Scope } from "effect"
import type { EventLog } from "../../core/EventLog.ts"
import { EventMeta, LinkAccessed, type LinkDeniedReason } from "../../core/Events.ts"
import { LinkId, ServiceId, Streams } from "../../core/Ids.ts"
import { CAPS, sanitize } from "../../core/Text.ts"
import * as Windows from "../../core/Windows.ts"
import * as FactRecorder from "../eventlog/FactRecorder.ts"
import type { Spool } from "../eventlog/Spool.ts"
import * as TokenBucket from "../../core/TokenBucket.ts"
import { addressKey, blockKey } from "./AuthFailures.ts"
import * as LinkGroups from "./LinkGroups.ts"

/** The link a request went through. */
export interface LinkRef {
  readonly linkId: string
  readonly workspaceId: string
  readonly serviceId: string
}

/** Stream of requests whose token matched no link (there is no link stream to put them on). */
export const UNKNOWN_LINK_STREAM = "link-unknown"

/** What is recorded of one request. */
export interface Access {
  /** The link, absent when the token matched none. */
  readonly link: LinkRef | undefined
  readonly ip: string
  readonly userAgent: string | undefined
  readonly method: string
  readonly path: string
  readonly status: number
  readonly bytesUp: number
  readonly bytesDown: number
  readonly durationMs: number
}

/** The recorder. */
export interface LinkRecorder {
  /** Records a request that was let through, once its response is done (in the background). */
  readonly allowed: (access: Access) => void
  /** Counts a refused request into its window; the window's first is recorded at once (in the background). */
  readonly denied: (access: Access, reason: typeof LinkDeniedReason.Type) => void
  /** Whether the records of requests let through are not being kept up with (LinkGroups.stalled): refuse new ones. */
  readonly stalled: () => boolean
}

/** Longest path recorded (code points). */
const PATH_CAP = 512

interface Window {
  readonly startedAt: number
  readonly first: Access
  readonly reason: typeof LinkDeniedReason.Type
  last: Access
  /** Refusals after the first (which was recorded on its own), and when the first and last of them came. */
  count: number
  firstAt: number
  lastAt: number
}

const TAG = { _tag: "LinkAccessed" } as const

/**
 * A `LinkAccessed` with `fields`, made without its class's constructor: what the constructor leaves is an object of
 * the class's prototype holding the fields and then `_tag`, and that is built here directly. The constructor costs
 * 6-11 µs a request even without validation (it copies the fields, merges the defaults of all 17 declared ones field
 * by field), 2-4% of the hub's CPU at 32 clients; this costs 0.4 µs. No validation either (4.4% before that was
 * dropped): the fields are sanitised and capped by `eventOf`, and the append encodes the event through its schema,
 * which refuses one that does not hold. LinkRecorder.test checks that it equals, and encodes as, the constructor's.
 */
export const accessed = (fields: Omit<LinkAccessed, "_tag">): LinkAccessed =>
  Object.assign(Object.create(LinkAccessed.prototype) as LinkAccessed, fields, TAG)

const eventOf = (a: Access, ids: LinkIds | undefined, outcome: "allowed" | "denied", reason?: typeof LinkDeniedReason.Type) =>
  accessed({
    ...(ids ? { linkId: ids.linkId, serviceId: ids.serviceId } : {}),
    ip: sanitize(a.ip, CAPS.name),
    method: sanitize(a.method, 16),
    path: sanitize(a.path, PATH_CAP),
    status: a.status,
    outcome,
    ...(reason ? { reason } : {}),
    bytes: a.bytesUp + a.bytesDown,
    durationMs: Math.max(0, Math.round(a.durationMs)),
    bytesUp: a.bytesUp,
    bytesDown: a.bytesDown
  })

/** A link's branded ids and stream. */
interface LinkIds {
  readonly linkId: LinkId
  readonly serviceId: ServiceId
  readonly stream: string
}

/**
 * The branded ids and stream of a request's link, made once per link while it is in use: a brand's `make` validates
 * through its schema (1.5% of the hub's CPU at 32 clients, twice per request).
 */
const linkIdsCache = () => {
  const cache = new Map<string, LinkIds>()
  return (link: LinkRef | undefined): LinkIds | undefined => {
    if (link === undefined) return undefined
    const hit = cache.get(link.linkId)
    if (hit !== undefined && hit.serviceId === link.serviceId) return hit
    const linkId = LinkId.make(link.linkId)
    const ids = { linkId, serviceId: ServiceId.make(link.serviceId), stream: Streams.link(linkId) }
    if (cache.size >= 4096) cache.clear()
    cache.set(link.linkId, ids)
    return ids
  }
}

/**
 * The metadata of a request's records, one instance per address and user agent while it is in use: the log encodes an
 * `EventMeta` once per instance (AppendBatch.metaText), and requests from one client share it.
 */
/**
 * A long value keys by what is recorded of it (sanitised and capped: a flat string of its own), not by itself nor a
 * slice of it, which would keep the whole string alive: 4,096 strangers' 16 KB user agents were 64 MiB.
 */
const short = (text: string, cap: number) => (text.length <= 2 * cap ? text : sanitize(text, cap))

const metaCache = () => {
  const cache = new Map<string, EventMeta>()
  return (a: Access): EventMeta => {
    const key = `${short(a.ip, CAPS.name)}\0${a.userAgent === undefined ? "" : short(a.userAgent, CAPS.label)}`
    let meta = cache.get(key)
    if (meta === undefined) {
      meta = new EventMeta({
        actor: { kind: "public" },
        sourceIp: sanitize(a.ip, CAPS.name),
        ...(a.userAgent ? { userAgent: sanitize(a.userAgent, CAPS.label) } : {})
      })
      // Bounded: a stranger cycling user agents costs a cleared map, not memory.
      if (cache.size >= 4096) cache.clear()
      cache.set(key, meta)
    }
    return meta
  }
}

/** Refusals of one link an IPv6 /48 may have recorded per /64 window before they are counted per /48, and its refill per second. */
const BLOCK_BURST = 20
const BLOCK_PER_SECOND = 0.2

/** Makes the recorder over the log, spooling to `spool`; its scope records every open window and group when it closes. */
export const make = (
  spool: Spool,
  options: { readonly window?: Duration.DurationInput; readonly now?: () => number; readonly retry?: Schedule.Schedule<unknown> } = {}
): Effect.Effect<LinkRecorder, never, Scope.Scope | EventLog> =>
  Effect.gen(function*() {
    const now = options.now ?? Date.now
    const facts = yield* FactRecorder.make(spool, options.retry)
    const metaOf = metaCache()
    const idsOf = linkIdsCache()
    const streamOf = (a: Access) => idsOf(a.link)?.stream ?? UNKNOWN_LINK_STREAM
    const record = (a: Access, event: LinkAccessed) =>
      facts.record(streamOf(a), event, {
        expectedVersion: "any",
        workspaceId: a.link?.workspaceId ?? null,
        meta: metaOf(a)
      }).pipe(Effect.catchAll((e) => Effect.logError("links: LinkAccessed was not recorded", e)))

    const windows = yield* Windows.make<Window>({
      windowMs: Duration.toMillis(options.window ?? "10 seconds"),
      now,
      write: (w) => {
        if (w.count === 0) return Effect.void
        const event = eventOf(w.last, idsOf(w.last.link), "denied", w.reason)
        return record(
          w.last,
          new LinkAccessed({ ...event, count: w.count, firstAt: new Date(w.firstAt), lastAt: new Date(w.lastAt) })
        )
      }
    })
    const groups = yield* LinkGroups.make(facts, windows.fork)
    // Refusals are coalesced per IPv6 /64 (what one host holds), but a /48 (a tunnel broker hands one out for free) is
    // 65,536 of them, each a fresh window whose first refusal is recorded at once. So the /48 has an allowance of its
    // own per link; past it, its refusals are counted in one window per /48 and reason, as AuthFailures does.
    const blocks = TokenBucket.make({ burst: BLOCK_BURST, perSecond: BLOCK_PER_SECOND, now })

    return {
      allowed: (access) => {
        const meta = metaOf(access)
        const ids = idsOf(access.link)
        // Keyed by what is recorded of the user agent (sanitised, capped), not the raw header: up to 16 KB each, held
        // for every request that ends while an append is on its way.
        groups.add(`${access.link?.linkId ?? "-"}\0${meta.sourceIp ?? ""}\0${meta.userAgent ?? ""}`, {
          stream: ids?.stream ?? UNKNOWN_LINK_STREAM,
          workspaceId: access.link?.workspaceId ?? null,
          meta
        }, eventOf(access, ids, "allowed"))
      },
      denied: (access, reason) => {
        const link = access.link?.linkId ?? "-"
        const address = addressKey(access.ip)
        const block = blockKey(access.ip)
        const under = block !== address && !blocks.take(`${link}\0${block}`) ? block : address
        const key = `${link}\0${under}\0${reason}`
        const { window, fresh } = windows.at(key, (t) => ({
          startedAt: t,
          first: access,
          reason,
          last: access,
          count: 0,
          firstAt: t,
          lastAt: t
        }))
        if (fresh) return windows.fork(record(access, eventOf(access, idsOf(access.link), "denied", reason)))
        const t = now()
        window.count++
        if (window.count === 1) window.firstAt = t
        window.last = access
        window.lastAt = t
      },
      stalled: groups.stalled
    }
  })
