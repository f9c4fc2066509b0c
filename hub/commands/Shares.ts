/**
 * Shares, the owner's and the joiner's operations: create (a code of 190 random bits shown once, kept as SHA-256 and a
 * 9-character prefix), list, revoke (the relay closes the tunnels opened through it: Gateway.ts follows
 * `ShareRevoked`), and join (an agent of another workspace presents the code once and holds a grant from then on).
 * Every change is a command through a decider; every refused join is recorded, coalesced (ShareDenials.ts).
 */
import { Effect } from "effect"
import { DomainError } from "../../core/DomainError.ts"
import type { EventMeta } from "../../core/Events.ts"
import { AgentId, ShareId, Streams, uuidv7, WorkspaceId } from "../../core/Ids.ts"
import { randomBase62, sha256Hex } from "../../core/Secrets.ts"
import * as ServiceDecider from "../../core/ServiceDecider.ts"
import * as ShareDecider from "../../core/ShareDecider.ts"
import * as Command from "./Command.ts"
import * as SharesTable from "../readmodels/Shares.ts"
import type { ShareDenials } from "./ShareDenials.ts"
import * as Scoped from "../db/Scoped.ts"

/** A share code: `sh_` and 32 base62 characters (≈190 bits). */
export const generateCode = (): string => `sh_${randomBase62(32)}`

/** Whether `code` has the shape of a share code; anything else is refused without a look-up. */
export const looksLikeCode = (code: string): boolean => code.length === 35 && /^sh_[0-9A-Za-z]{32}$/.test(code)

/** The part of a code that may be shown and stored. */
export const codePrefix = (code: string): string => code.slice(0, 9)

/** Most services one share names. */
export const MAX_SERVICES = 64

/** What `create` asks for. */
export interface CreateRequest {
  readonly services: ReadonlyArray<string>
  readonly expiresInMs: number
  readonly name?: string
  readonly rateLimit?: { readonly limit: number; readonly windowSeconds: number }
}

/** A share as listed. */
export interface ShareInfo {
  readonly shareId: string
  readonly name: string | null
  readonly codePrefix: string | null
  readonly services: ReadonlyArray<string>
  readonly expiresAt: string
  readonly rateLimit: string | null
  readonly createdAt: string
  readonly revokedAt: string | null
  readonly status: "active" | "expired" | "revoked"
  readonly joined: number
}

/** A share row as listed at `now`. */
export const infoOf = (r: SharesTable.ShareRow, now: Date): ShareInfo => ({
  shareId: r.id,
  name: r.name,
  codePrefix: r.code_prefix,
  services: r.services.map((s) => s.name),
  expiresAt: new Date(r.expires_at).toISOString(),
  rateLimit: r.rate_limit === null ? null : `${r.rate_limit}/${windowName(r.rate_window_s ?? 60)}`,
  createdAt: new Date(r.created_at).toISOString(),
  revokedAt: r.revoked_at === null ? null : new Date(r.revoked_at).toISOString(),
  status: r.revoked_at !== null ? "revoked" : new Date(r.expires_at) <= now ? "expired" : "active",
  joined: r.joined
})

const windowName = (s: number) => (s === 1 ? "s" : s === 60 ? "min" : s === 3_600 ? "h" : s === 86_400 ? "d" : `${s}s`)

/** Why a share row refuses a use at `now`, if it does. */
export const refusalOf = (r: SharesTable.ShareRow, now: Date): "revoked" | "expired" | undefined =>
  r.revoked_at !== null ? "revoked" : new Date(r.expires_at) <= now ? "expired" : undefined

/**
 * Creates a share of `request.services` (names of exposed services of `workspaceId`); returns it with its code, shown
 * this once.
 */
export const create = Effect.fn("Shares.create")(function*(
  workspaceId: string,
  request: CreateRequest,
  meta: EventMeta,
  now: Date
) {
  const names = [...new Set(request.services)]
  if (names.length === 0 || names.length > MAX_SERVICES) {
    return yield* new DomainError({ reason: "Invalid", message: `a share names 1 to ${MAX_SERVICES} services` })
  }
  const exposed = yield* Scoped.select<{ id: string; name: string }>(
    workspaceId,
    `select id, name from services where exposed and name = any($1::text[])`,
    [names]
  )
  const missing = names.filter((n) => !exposed.some((s) => s.name === n))
  if (missing.length > 0) {
    return yield* new DomainError({
      reason: "NotFound",
      message: `no exposed service named ${missing.join(", ")} in this workspace; \`connect services\` lists them`
    })
  }
  const shareId = ShareId.make(uuidv7())
  const code = generateCode()
  const expiresAt = new Date(now.getTime() + request.expiresInMs)
  yield* Command.handle(
    ShareDecider.decider,
    Streams.share(shareId),
    {
      _tag: "CreateShare",
      shareId,
      codeHash: sha256Hex(code),
      codePrefix: codePrefix(code),
      services: names.map((name) => ({ serviceId: ServiceDecider.serviceIdFor(workspaceId, name), name })),
      expiresAt,
      now,
      ...(request.name === undefined ? {} : { name: request.name }),
      ...(request.rateLimit === undefined ? {} : { rateLimit: request.rateLimit })
    },
    { workspaceId, meta }
  )
  const row = yield* SharesTable.inWorkspace(workspaceId, shareId)
  return { code, share: infoOf(row!, now) }
})

/** Revokes share `shareId` of `workspaceId` (404 when it has none of that id; revoking twice records nothing). */
export const revoke = Effect.fn("Shares.revoke")(function*(workspaceId: string, shareId: string, meta: EventMeta) {
  const row = yield* SharesTable.inWorkspace(workspaceId, shareId)
  if (!row) return yield* new DomainError({ reason: "NotFound", message: `share ${shareId} not found in this workspace` })
  const { events } = yield* Command.handle(
    ShareDecider.decider,
    Streams.share(ShareId.make(row.id)),
    { _tag: "RevokeShare", shareId: ShareId.make(row.id) },
    { workspaceId, meta }
  )
  return { revoked: events.length > 0 }
})

/** Who presents a code. */
export interface Joiner {
  readonly agentId: string
  readonly workspaceId: string
  readonly ip: string | undefined
}

/**
 * Agent `joiner` presents `code`: refused (and recorded, coalesced) when it is not a code, matches no share, or its
 * share is expired, revoked or the joiner's own workspace's; else `ShareJoined` on the peer stream (once per agent).
 */
export const join = Effect.fn("Shares.join")(function*(
  code: string,
  joiner: Joiner,
  denials: ShareDenials,
  meta: EventMeta,
  now: Date
) {
  const refuse = (reason: "unknown_code" | "expired" | "revoked" | "own_workspace", row?: SharesTable.ShareRow) =>
    Effect.zipRight(
      denials.deny({
        action: "join",
        reason,
        agentId: joiner.agentId,
        workspaceId: joiner.workspaceId,
        ip: joiner.ip,
        ...(row ? { share: { id: row.id, ownerId: row.workspace_id } } : {})
      }),
      new DomainError({
        reason: reason === "unknown_code" ? "NotFound" : reason === "own_workspace" ? "Invalid" : "Revoked",
        message: reason === "unknown_code"
          ? "no share has this code; check it with whoever gave it to you"
          : reason === "own_workspace"
          ? "this share belongs to your own workspace: its services are yours to reach already"
          : `this share is ${reason}; ask its owner for a new code`
      })
    )
  if (!looksLikeCode(code)) return yield* refuse("unknown_code")
  const row = yield* SharesTable.byCodeHash(sha256Hex(code))
  if (!row) return yield* refuse("unknown_code")
  if (row.workspace_id === joiner.workspaceId) return yield* refuse("own_workspace", row)
  const refused = refusalOf(row, now)
  if (refused) return yield* refuse(refused, row)
  const peerWorkspaceId = WorkspaceId.make(joiner.workspaceId)
  const { events } = yield* Command.handle(
    ShareDecider.joinDecider,
    ShareDecider.peerStream(row.id, joiner.workspaceId),
    { _tag: "JoinShare", shareId: ShareId.make(row.id), agentId: AgentId.make(joiner.agentId), peerWorkspaceId },
    { workspaceId: row.workspace_id, meta }
  )
  return { share: infoOf(row, now), owner: row.workspace_name ?? row.workspace_id, joined: events.length > 0 }
})
