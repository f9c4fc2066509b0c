/**
 * Coalesced share refusals: a code tried 10,000 times, or a grant used after its share expired, must not append
 * 10,000 events. Per share (or, for a code that matches none, per agent), agent, action and reason, the first refusal
 * of a window is appended at once and the rest of the window as one `ShareAccessed` with `count`, `firstAt` and
 * `lastAt` when it ends (core/Windows.ts, as ReachDenials.ts and AuthFailures.ts do). Nothing of the code presented
 * is kept: it may be a mistyped real one.
 *
 * Where each refusal goes: a known share's into the owner's workspace on the peer stream (`ShareDecider.peerStream`),
 * which the joiner reads too (`byWorkspaceId`) — except a `not_shared` one, which names a service the owner did not
 * share and stays the owner's alone; an unknown code's, and a join from the owner's own workspace, into the
 * presenting agent's own workspace on its stream, which nobody else reads.
 */
import { Duration, Effect } from "effect"
import type { Scope } from "effect"
import { type AppendOptions, EventLog } from "../../core/EventLog.ts"
import { type Event, EventMeta, ShareAccessed, type ShareDeniedReason } from "../../core/Events.ts"
import { AgentId, ShareId, Streams, WorkspaceId } from "../../core/Ids.ts"
import { peerStream } from "../../core/ShareDecider.ts"
import { CAPS, sanitize } from "../../core/Text.ts"
import * as Windows from "../../core/Windows.ts"

/** One refusal: who, what, why, and of which share (absent: the code matched none). */
export interface ShareRefusal {
  readonly action: "join" | "open"
  readonly reason: typeof ShareDeniedReason.Type
  readonly agentId: string
  readonly workspaceId: string
  readonly ip: string | undefined
  readonly share?: { readonly id: string; readonly ownerId: string }
  readonly serviceName?: string
}

/** Options of `make`. */
export interface ShareDenialsOptions {
  /** Length of a coalescing window (default 10 s). */
  readonly window?: Duration.DurationInput
  /** The clock in ms (default `Date.now`). */
  readonly now?: () => number
  /** How an event is recorded (default: appended; the relay passes its FactRecorder, which spools). */
  readonly record?: (stream: string, event: Event, options: AppendOptions) => Effect.Effect<void, unknown>
  /**
   * Record a window's first refusal in the background (awaited when the scope closes) rather than before `deny`
   * resolves: the shares API answers a refused join at once, and a request given up meanwhile (its answer bounded,
   * hub/http/AnswerWithin.ts) cannot take the record with it. Default false: the relay answers after the record.
   */
  readonly background?: boolean
}

/** The coalescer. */
export interface ShareDenials {
  /** Records a refusal; resolves once a window's first refusal is appended (at once with `background`; later ones always). */
  readonly deny: (refusal: ShareRefusal) => Effect.Effect<void>
  /** Windows open now. */
  readonly open: () => number
}

interface Window {
  readonly refusal: ShareRefusal
  readonly startedAt: number
  count: number
  firstAt: number
  lastAt: number
}

/** Where a refusal is recorded: its stream and workspace. */
const placeOf = (r: ShareRefusal) =>
  r.share && r.share.ownerId !== r.workspaceId
    ? { stream: peerStream(r.share.id, r.workspaceId), workspaceId: r.share.ownerId, peer: true }
    : { stream: Streams.agent(AgentId.make(r.agentId)), workspaceId: r.workspaceId, peer: false }

/** The event of a refusal (with the window's count when there is one). */
export const eventOf = (r: ShareRefusal, window?: { count: number; firstAt: number; lastAt: number }) => {
  const peer = placeOf(r).peer
  return new ShareAccessed({
    ...(r.share ? { shareId: ShareId.make(r.share.id) } : {}),
    action: r.action,
    agentId: AgentId.make(r.agentId),
    // A `not_shared` refusal names a service the owner has and did not share: the joiner must not read it, or trying
    // names would tell it which exist (a name the owner does not have leaves no record). The owner's alone.
    ...(peer && r.reason !== "not_shared" ? { byWorkspaceId: WorkspaceId.make(r.workspaceId) } : {}),
    ...(r.serviceName === undefined ? {} : { serviceName: sanitize(r.serviceName, CAPS.name) }),
    ...(r.ip ? { ip: r.ip } : {}),
    outcome: "denied",
    reason: r.reason,
    ...(window ? { count: window.count, firstAt: new Date(window.firstAt), lastAt: new Date(window.lastAt) } : {})
  })
}

/** The meta of an event an agent's attempt causes. */
export const agentMeta = (agentId: string, ip: string | undefined) =>
  new EventMeta({ actor: { kind: "agent", id: agentId }, ...(ip ? { sourceIp: ip } : {}) })

/** Makes the coalescer; its scope writes every open window when it closes. */
export const make = (options: ShareDenialsOptions = {}): Effect.Effect<ShareDenials, never, EventLog | Scope.Scope> =>
  Effect.gen(function*() {
    const log = yield* EventLog
    const record = options.record ?? ((stream, event, opts) => log.append(stream, [event], opts))
    const now = options.now ?? Date.now

    const append = (r: ShareRefusal, event: ShareAccessed) => {
      const place = placeOf(r)
      return record(place.stream, event, {
        expectedVersion: "any",
        workspaceId: place.workspaceId,
        meta: agentMeta(r.agentId, r.ip)
      }).pipe(Effect.asVoid, Effect.catchAll((e) => Effect.logError("shares: ShareAccessed was not recorded", e)))
    }

    const windows = yield* Windows.make<Window>({
      windowMs: Duration.toMillis(options.window ?? "10 seconds"),
      now,
      write: (w) => (w.count === 0 ? Effect.void : append(w.refusal, eventOf(w.refusal, w)))
    })

    return {
      deny: (r) =>
        Effect.suspend(() => {
          const key = [r.share?.id ?? "-", r.agentId, r.action, r.reason].join("\0")
          const { window: w, fresh } = windows.at(key, (t) => ({ refusal: r, startedAt: t, count: 0, firstAt: t, lastAt: t }))
          if (fresh) {
            if (!options.background) return append(r, eventOf(r))
            windows.fork(append(r, eventOf(r)))
            return Effect.void
          }
          const t = now()
          w.count++
          if (w.count === 1) w.firstAt = t
          w.lastAt = t
          return Effect.void
        }),
      open: windows.size
    }
  })
