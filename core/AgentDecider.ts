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

/**
 * How long a rotated-out token keeps working: 24 h, so an agent that crashed mid-rotation can still come back — at
 * most a quarter of the new token's lifetime (`TTL_SHARE`), and never past the old token's own expiry.
 */
export const ROTATION_GRACE_MS = 24 * 60 * 60 * 1000

/** From how long before expiry the hub warns an agent in `Welcome`: 7 days, at most a quarter of the token's lifetime. */
export const EXPIRY_WARNING_MS = 7 * 24 * 60 * 60 * 1000

/**
 * The share of a token's lifetime the grace and the warning may take: a quarter. A token is then quiet for its first
 * three quarters (a 15-minute token is not "expiring soon" when it is issued) and warned for the last one, long enough
 * to rotate; a rotated-out token outlives its successor's issue by at most that quarter. With the default 30 days a
 * quarter is 7.5 days, so the 24 h grace and the 7-day warning stand as they were; with the shortest, 5 minutes, both
 * are 75 s.
 */
export const TTL_SHARE = 4

/** Shortest and longest token lifetime `--ttl` takes: 5 minutes, 30 days. */
export const TTL_MIN_MS = 5 * 60 * 1000
export const TTL_MAX_MS = 30 * 24 * 60 * 60 * 1000

const TTL_UNITS: Record<string, number> = { m: 60_000, h: 3_600_000, d: 86_400_000 }

/** A token lifetime as typed after `--ttl` (`15m`, `12h`, `7d`) in ms, from 5 minutes to 30 days; else why not. */
export const parseTtl = (text: string): Either.Either<number, string> => {
  const m = /^(\d{1,6})([mhd])$/.exec(text.trim())
  const range = "from 5m to 30d (minutes m, hours h, days d, e.g. 15m, 12h, 7d)"
  if (!m) return Either.left(`--ttl ${JSON.stringify(text.slice(0, 40))} is not a lifetime: give one ${range}`)
  const ms = Number(m[1]) * TTL_UNITS[m[2]!]!
  if (ms < TTL_MIN_MS || ms > TTL_MAX_MS) return Either.left(`--ttl ${m[0]} is out of range: give one ${range}`)
  return Either.right(ms)
}

/** The rotation grace of a new token living `ttlMs`. */
export const graceFor = (ttlMs: number): number => Math.min(ROTATION_GRACE_MS, Math.floor(ttlMs / TTL_SHARE))

/** The expiry warning window of a token living `ttlMs`. */
export const warningFor = (ttlMs: number): number => Math.min(EXPIRY_WARNING_MS, Math.floor(ttlMs / TTL_SHARE))

/** What the log says about one agent. */
export interface AgentState {
  readonly status: "none" | "active" | "revoked"
  readonly label: string
  readonly tokenHash: string | undefined
  readonly expiresAt: Date | undefined
  /** The token lifetime the agent was provisioned with (`--ttl`); undefined: the hub's default. */
  readonly ttlMs?: number | undefined
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
    /** The lifetime asked for (`--ttl`), recorded so that rotations keep it; absent: the hub's default. */
    readonly ttlMs?: number
  }
  | {
    readonly _tag: "RotateAgentToken"
    readonly agentId: AgentId
    readonly newTokenHash: string
    /** The expiry by the hub's default lifetime; an agent provisioned with `--ttl` gets `now` + that instead. */
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
      return {
        ...initialState,
        status: "active",
        label: event.label,
        tokenHash: event.tokenHash,
        expiresAt: event.expiresAt,
        ttlMs: event.ttlSeconds === undefined ? undefined : event.ttlSeconds * 1000
      }
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
        expiresAt: command.expiresAt,
        ...(command.ttlMs === undefined ? {} : { ttlSeconds: Math.round(command.ttlMs / 1000) })
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
    case "RotateAgentToken": {
      if (state.status === "revoked") return revoked(command.agentId)
      const now = command.now.getTime()
      // An agent's own lifetime, within the hub's as it is now (`newExpiresAt`: an operator who shortened it is obeyed).
      const newExpiresAt = state.ttlMs === undefined
        ? command.newExpiresAt
        : new Date(Math.min(now + state.ttlMs, command.newExpiresAt.getTime()))
      const grace = graceFor(newExpiresAt.getTime() - now)
      const oldExpiry = state.expiresAt?.getTime() ?? Infinity
      return Either.right([
        new AgentTokenRotated({
          agentId: command.agentId,
          newTokenHash: Sha256Hex.make(command.newTokenHash),
          newExpiresAt,
          oldValidUntil: new Date(Math.max(now, Math.min(now + grace, oldExpiry)))
        })
      ])
    }
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

/**
 * Whether an agent should be warned that the token it used expires soon: within `EXPIRY_WARNING_MS`, or within a
 * quarter of its lifetime `ttlMs` when that is shorter.
 */
export const expiresSoon = (expiresAt: Date, now: Date, ttlMs?: number): boolean =>
  expiresAt.getTime() - now.getTime() <= (ttlMs === undefined ? EXPIRY_WARNING_MS : warningFor(ttlMs))
