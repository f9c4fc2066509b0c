/**
 * The agent aggregate (stream `agent-<id>`): provisioning, token rotation and revocation, connections, and the pure
 * check of a presented token against the agent's current and previous (grace period) token.
 */
import { Either } from "effect"
import { DomainError } from "./DomainError.ts"
import type { Decider } from "./Decider.ts"
import {
  AgentConnected,
  AgentDisconnected,
  AgentIpChanged,
  AgentProvisioned,
  AgentTokenRevoked,
  AgentTokenRotated,
  type AuthFailureReason,
  type DisconnectReason,
  type Event,
  Sha256Hex
} from "./Events.ts"
import type { AgentId } from "./Ids.ts"

/** How long a rotated-out token keeps working: 24 h, so an agent that crashed mid-rotation can still come back. */
export const ROTATION_GRACE_MS = 24 * 60 * 60 * 1000

/** From how long before expiry the hub warns an agent in `Welcome`: 7 days. */
export const EXPIRY_WARNING_MS = 7 * 24 * 60 * 60 * 1000

/** What the log says about one agent. */
export interface AgentState {
  readonly status: "none" | "active" | "revoked"
  readonly label: string
  readonly tokenHash: string | undefined
  readonly expiresAt: Date | undefined
  readonly prevTokenHash: string | undefined
  readonly prevValidUntil: Date | undefined
  readonly lastIp: string | undefined
}

/** Commands on an agent. */
export type AgentCommand =
  | {
    readonly _tag: "ProvisionAgent"
    readonly agentId: AgentId
    readonly label: string
    readonly tokenHash: string
    readonly expiresAt: Date
  }
  | {
    readonly _tag: "RotateAgentToken"
    readonly agentId: AgentId
    readonly newTokenHash: string
    readonly newExpiresAt: Date
    readonly now: Date
  }
  | { readonly _tag: "RevokeAgentToken"; readonly agentId: AgentId; readonly reason?: string }
  | {
    readonly _tag: "ConnectAgent"
    readonly agentId: AgentId
    readonly ip: string
    readonly userAgent: string
    readonly transport: string
  }
  | {
    readonly _tag: "DisconnectAgent"
    readonly agentId: AgentId
    readonly reason: typeof DisconnectReason.Type
    readonly durationMs: number
  }

const initialState: AgentState = {
  status: "none",
  label: "",
  tokenHash: undefined,
  expiresAt: undefined,
  prevTokenHash: undefined,
  prevValidUntil: undefined,
  lastIp: undefined
}

const evolve = (state: AgentState, event: Event): AgentState => {
  switch (event._tag) {
    case "AgentProvisioned":
      return { ...initialState, status: "active", label: event.label, tokenHash: event.tokenHash, expiresAt: event.expiresAt }
    case "AgentTokenRotated":
      return {
        ...state,
        prevTokenHash: state.tokenHash,
        prevValidUntil: event.oldValidUntil,
        tokenHash: event.newTokenHash,
        expiresAt: event.newExpiresAt
      }
    case "AgentTokenRevoked":
      return { ...state, status: "revoked" }
    case "AgentConnected":
      return { ...state, lastIp: event.ip }
    case "AgentIpChanged":
      return { ...state, lastIp: event.newIp }
    default:
      return state
  }
}

const notFound = (agentId: string) => Either.left(new DomainError({ reason: "NotFound", message: `agent ${agentId} not found` }))
const revoked = (agentId: string) =>
  Either.left(new DomainError({ reason: "Revoked", message: `agent ${agentId} has been revoked` }))

const decide = (command: AgentCommand, state: AgentState): Either.Either<ReadonlyArray<Event>, DomainError> => {
  if (command._tag === "ProvisionAgent") {
    if (state.status !== "none") {
      return Either.left(new DomainError({ reason: "AlreadyExists", message: `agent ${command.agentId} already exists` }))
    }
    const label = command.label.trim()
    if (label === "") return Either.left(new DomainError({ reason: "Invalid", message: "the agent label is empty" }))
    return Either.right([
      new AgentProvisioned({
        agentId: command.agentId,
        label,
        tokenHash: Sha256Hex.make(command.tokenHash),
        expiresAt: command.expiresAt
      })
    ])
  }
  if (state.status === "none") return notFound(command.agentId)
  switch (command._tag) {
    case "RevokeAgentToken":
      // Revoking twice changes nothing, so it records nothing.
      if (state.status === "revoked") return Either.right([])
      return Either.right([
        new AgentTokenRevoked({ agentId: command.agentId, ...(command.reason ? { reason: command.reason } : {}) })
      ])
    case "RotateAgentToken":
      if (state.status === "revoked") return revoked(command.agentId)
      return Either.right([
        new AgentTokenRotated({
          agentId: command.agentId,
          newTokenHash: Sha256Hex.make(command.newTokenHash),
          newExpiresAt: command.newExpiresAt,
          oldValidUntil: new Date(command.now.getTime() + ROTATION_GRACE_MS)
        })
      ])
    case "ConnectAgent": {
      if (state.status === "revoked") return revoked(command.agentId)
      const connected = new AgentConnected({
        agentId: command.agentId,
        ip: command.ip,
        userAgent: command.userAgent,
        transport: command.transport
      })
      return Either.right(
        state.lastIp !== undefined && state.lastIp !== command.ip
          ? [connected, new AgentIpChanged({ agentId: command.agentId, previousIp: state.lastIp, newIp: command.ip })]
          : [connected]
      )
    }
    case "DisconnectAgent":
      return Either.right([
        new AgentDisconnected({
          agentId: command.agentId,
          reason: command.reason,
          durationMs: Math.max(0, Math.round(command.durationMs))
        })
      ])
  }
}

/** The agent decider. */
export const decider: Decider<AgentCommand, AgentState, DomainError> = { initialState, evolve, decide }

/** A presented token that is accepted: until when, and whether it is the previous one (still in its grace period). */
export interface TokenAccepted {
  readonly expiresAt: Date
  readonly previous: boolean
}

/**
 * Checks the SHA-256 of a presented token against an agent's state at `now`: the current token until it expires, the
 * previous one until its grace period ends; a revoked agent refuses both.
 */
export const checkToken = (
  state: AgentState,
  tokenHash: string,
  now: Date
): Either.Either<TokenAccepted, typeof AuthFailureReason.Type> => {
  if (state.status === "none") return Either.left("unknown_token")
  const current = tokenHash === state.tokenHash
  const previous = !current && state.prevTokenHash !== undefined && tokenHash === state.prevTokenHash
  if (!current && !previous) return Either.left("unknown_token")
  if (state.status === "revoked") return Either.left("revoked_token")
  const until = current ? state.expiresAt! : state.prevValidUntil!
  if (now.getTime() >= until.getTime()) return Either.left("expired_token")
  return Either.right({ expiresAt: until, previous })
}

/** Whether an agent should be warned that the token it used expires soon (within `EXPIRY_WARNING_MS`). */
export const expiresSoon = (expiresAt: Date, now: Date): boolean =>
  expiresAt.getTime() - now.getTime() <= EXPIRY_WARNING_MS
