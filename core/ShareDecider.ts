/**
 * The share aggregate (stream `share-<id>`, in the owner's workspace): created with the hash of its code, revoked
 * once. Joins live on a stream per share and joining workspace (`share-<id>-peer-<workspace>`, `peerStream`), where
 * every event is readable by both sides (no version of that stream is hidden from either), and where an agent joins
 * once. Whether a code is still good (expiry, revocation) is checked by the hub against the `shares` read model on
 * every use, not here: a join is a fact about the agent, the share's validity a fact about the share.
 */
import { Either } from "effect"
import { DomainError } from "./DomainError.ts"
import type { Decider } from "./Decider.ts"
import { type Event, ShareCreated, ShareJoined, ShareRevoked } from "./Events.ts"
import type { AgentId, ServiceId, ShareId, WorkspaceId } from "./Ids.ts"

/** The stream of a share's joins and uses by one joining workspace. */
export const peerStream = (shareId: string, peerWorkspaceId: string): string => `share-${shareId}-peer-${peerWorkspaceId}`

/** What the log says about one share. */
export interface ShareState {
  readonly status: "none" | "active" | "revoked"
}

/** Commands on a share. */
export type ShareCommand =
  | {
    readonly _tag: "CreateShare"
    readonly shareId: ShareId
    readonly codeHash: string
    readonly codePrefix: string
    readonly services: ReadonlyArray<{ readonly serviceId: ServiceId; readonly name: string }>
    readonly expiresAt: Date
    readonly now: Date
    readonly name?: string
    readonly rateLimit?: { readonly limit: number; readonly windowSeconds: number }
  }
  | { readonly _tag: "RevokeShare"; readonly shareId: ShareId }

const refuse = (reason: DomainError["reason"], message: string) => Either.left(new DomainError({ reason, message }))

/** The share decider. */
export const decider: Decider<ShareCommand, ShareState, DomainError> = {
  initialState: { status: "none" },
  evolve: (state, event: Event) => {
    switch (event._tag) {
      case "ShareCreated":
        return { status: "active" }
      case "ShareRevoked":
        return { status: "revoked" }
      default:
        return state
    }
  },
  decide: (command, state) => {
    switch (command._tag) {
      case "CreateShare": {
        if (state.status !== "none") return refuse("AlreadyExists", `share ${command.shareId} exists already`)
        if (command.services.length === 0) return refuse("Invalid", "a share needs at least one service")
        if (command.expiresAt.getTime() <= command.now.getTime()) return refuse("Invalid", "a share must expire in the future")
        return Either.right([
          new ShareCreated({
            shareId: command.shareId,
            codeHash: command.codeHash as ShareCreated["codeHash"],
            codePrefix: command.codePrefix,
            services: command.services.map((s) => ({ serviceId: s.serviceId, name: s.name })),
            expiresAt: command.expiresAt,
            permissions: ["reach"],
            ...(command.name === undefined ? {} : { name: command.name }),
            ...(command.rateLimit === undefined ? {} : { rateLimit: command.rateLimit })
          })
        ])
      }
      case "RevokeShare":
        if (state.status === "none") return refuse("NotFound", `share ${command.shareId} not found`)
        // Revoking twice records nothing.
        return Either.right(state.status === "revoked" ? [] : [new ShareRevoked({ shareId: command.shareId })])
    }
  }
}

/** Agents of one workspace that joined one share (the peer stream's state). */
export interface JoinState {
  readonly agents: ReadonlySet<string>
}

/** Joining: an agent of another workspace takes a grant of the share's services. */
export interface JoinShare {
  readonly _tag: "JoinShare"
  readonly shareId: ShareId
  readonly agentId: AgentId
  readonly peerWorkspaceId: WorkspaceId
}

/** The decider of a peer stream: an agent joins once (a second join of the same agent records nothing). */
export const joinDecider: Decider<JoinShare, JoinState, DomainError> = {
  initialState: { agents: new Set() },
  evolve: (state, event) =>
    event._tag === "ShareJoined" ? { agents: new Set([...state.agents, event.agentId]) } : state,
  decide: (command, state) =>
    Either.right(
      state.agents.has(command.agentId)
        ? []
        : [new ShareJoined({ shareId: command.shareId, agentId: command.agentId, peerWorkspaceId: command.peerWorkspaceId })]
    )
}

/** Parses a duration like `30s`, `15m`, `12h`, `7d` into milliseconds; undefined when it is not one (or over 10 years). */
export const parseDuration = (text: string): number | undefined => {
  const match = /^(\d{1,6})([smhd])$/.exec(text)
  if (!match) return undefined
  const n = Number(match[1])
  const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] as "s" | "m" | "h" | "d"]
  const ms = n * unit
  return n > 0 && ms <= 3_650 * 86_400_000 ? ms : undefined
}

/** Parses a rate limit like `60/min`, `5/s`, `1000/h` into a limit and a window; undefined when it is not one. */
export const parseRateLimit = (text: string): { readonly limit: number; readonly windowSeconds: number } | undefined => {
  const match = /^(\d{1,7})\/(s|sec|second|m|min|minute|h|hour|d|day)$/.exec(text)
  if (!match) return undefined
  const limit = Number(match[1])
  const windowSeconds = { s: 1, m: 60, h: 3_600, d: 86_400 }[match[2]![0] as "s" | "m" | "h" | "d"]
  return limit > 0 ? { limit, windowSeconds } : undefined
}
