/**
 * Reach through a share: a name the reacher's own workspace does not have is looked for among the shares its agent
 * joined. Every use is checked here, at the hub, on every `Reach` and `Open` — the share neither revoked nor expired
 * (read from the `shares` read model, so a revocation holds from its commit), under its rate limit (`@effect/
 * experimental`'s RateLimiter, a fixed window per share) — and recorded: `ShareAccessed` allowed (fail closed: no
 * record, no tunnel) or denied (coalesced, ShareDenials.ts) in the owner's workspace, readable by the joiner
 * (`byWorkspaceId`). A name the owner has but the share does not include is `not_shared`; only shared services are
 * visible.
 */
import * as RateLimiter from "@effect/experimental/RateLimiter"
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import type { Scope } from "effect"
import type { AppendOptions } from "../../core/EventLog.ts"
import { EventLog } from "../../core/EventLog.ts"
import { type Event, ShareAccessed } from "../../core/Events.ts"
import { AgentId, ShareId, WorkspaceId } from "../../core/Ids.ts"
import { type ReachRoute, RelayDenied, type Session } from "../../core/RelayPolicy.ts"
import { peerStream } from "../../core/ShareDecider.ts"
import * as ShareDenials from "../commands/ShareDenials.ts"
import { refusalOf } from "../commands/Shares.ts"
import * as Services from "../readmodels/Services.ts"
import * as SharesTable from "../readmodels/Shares.ts"

/** Options of `make`. */
export interface ShareReachOptions {
  /** How a refusal is recorded (the relay's FactRecorder: retried, then spooled). */
  readonly record?: (stream: string, event: Event, options: AppendOptions) => Effect.Effect<void, unknown>
  /** The hub's clock (expiry). */
  readonly now: () => Date
  /** Coalescing window of refusals (default 10 s). */
  readonly window?: import("effect").Duration.DurationInput
}

/** Reach through shares. */
export interface ShareReach {
  /**
   * The route to `name` through a share `session`'s agent joined, recorded as allowed; a refusal (recorded) when the
   * share refuses; undefined when no share of this agent names `name` (the caller answers not found).
   */
  readonly resolve: (
    session: Session,
    name: string,
    ip: string | undefined
  ) => Effect.Effect<ReachRoute | undefined, RelayDenied | import("@effect/sql/SqlError").SqlError, SqlClient.SqlClient>
}

const forbidden = (message: string) => new RelayDenied({ code: "Forbidden", message })

/** Makes it; its scope writes the open refusal windows when it closes. */
export const make = (
  options: ShareReachOptions
): Effect.Effect<ShareReach, never, EventLog | Scope.Scope> =>
  Effect.gen(function*() {
    const log = yield* EventLog
    const denials = yield* ShareDenials.make({
      ...(options.record ? { record: options.record } : {}),
      ...(options.window ? { window: options.window } : {})
    })
    // Keys are share ids: bounded by the shares that exist, so the memory store (which keeps every key) is fine here.
    const limiter = yield* RateLimiter.make.pipe(Effect.provide(RateLimiter.layerStoreMemory))

    const deny = (
      session: Session,
      share: SharesTable.ShareRow,
      reason: "expired" | "revoked" | "rate_limited" | "not_shared",
      name: string,
      ip: string | undefined
    ) =>
      denials.deny({
        action: "open",
        reason,
        agentId: session.agentId,
        workspaceId: session.workspaceId,
        ip,
        share: { id: share.id, ownerId: share.workspace_id },
        serviceName: name
      })

    /** Within the share's rate limit (none: always): consumes one of its window's opens. */
    const withinLimit = (share: SharesTable.ShareRow) =>
      share.rate_limit === null
        ? Effect.succeed(true)
        : limiter.consume({
          algorithm: "fixed-window",
          onExceeded: "fail",
          key: `share:${share.id}`,
          limit: share.rate_limit,
          window: `${share.rate_window_s ?? 60} seconds`
        }).pipe(Effect.as(true), Effect.catchAll(() => Effect.succeed(false)))

    const allowed = (session: Session, share: SharesTable.ShareRow, name: string, ip: string | undefined) =>
      log.append(
        peerStream(share.id, session.workspaceId),
        [
          new ShareAccessed({
            shareId: ShareId.make(share.id),
            action: "open",
            agentId: AgentId.make(session.agentId),
            byWorkspaceId: WorkspaceId.make(session.workspaceId),
            serviceName: name,
            ...(ip ? { ip } : {}),
            outcome: "allowed"
          })
        ],
        { expectedVersion: "any", workspaceId: share.workspace_id, meta: ShareDenials.agentMeta(session.agentId, ip) }
      ).pipe(
        Effect.catchAll((e) =>
          Effect.zipRight(
            Effect.logWarning("relay policy: ShareAccessed could not be recorded", e),
            Effect.fail(new RelayDenied({ code: "Unavailable", message: "the hub cannot record this access right now; try again" }))
          )
        )
      )

    /** A name of an owner whose share this agent holds, which that share does not include: recorded `not_shared`. */
    const notShared = (session: Session, name: string, ip: string | undefined) =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const [row] = yield* sql.unsafe<{ share_id: string }>(
          `select g.share_id from share_grants g join services v on v.workspace_id = g.workspace_id
            where g.agent_id = $1 and v.name = $2 and v.exposed order by g.joined_at limit 1`,
          [session.agentId, name]
        )
        if (!row) return
        const [share] = yield* sql.unsafe<SharesTable.ShareRow>(`select * from shares where id = $1`, [row.share_id])
        if (share) yield* deny(session, share, "not_shared", name, ip)
      })

    return {
      resolve: (session, name, ip) =>
        Effect.gen(function*() {
          const grants = yield* SharesTable.grantsFor(session.agentId, name)
          if (grants.length === 0) {
            yield* notShared(session, name, ip)
            return undefined
          }
          const now = options.now()
          const live = grants.find((g) => refusalOf(g, now) === undefined)
          if (!live) {
            const share = grants[0]!
            const reason = refusalOf(share, now)!
            yield* deny(session, share, reason, name, ip)
            return yield* forbidden(`the share granting ${name} is ${reason}`)
          }
          if (!(yield* withinLimit(live))) {
            yield* deny(session, live, "rate_limited", name, ip)
            return yield* forbidden(`the share granting ${name} is over its rate limit; try again later`)
          }
          const service = yield* Services.byName(live.workspace_id, name, session.agentId)
          if (!service) return undefined
          if (!service.connected) {
            return yield* new RelayDenied({ code: "AgentOffline", message: `the agent exposing ${name} is offline` })
          }
          yield* allowed(session, live, name, ip)
          return { agentId: service.agent_id, workspaceId: live.workspace_id, service: name, shareId: live.id }
        })
    }
  })
