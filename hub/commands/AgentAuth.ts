/**
 * Who a presented credential is: agent tokens (current, or previous within its rotation grace) and API keys, looked
 * up by SHA-256 through the security-definer functions, checked by the agent decider's rules. A refused agent token
 * is audited as `AgentAuthFailed`, a refused API key as `ApiKeyAuthFailed` (reason, ip, at most an 8-character
 * prefix; coalesced per address past its limit, see AuthFailures.ts); nothing else of a secret is kept.
 */
import type { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Config, Context, Effect, Either, Layer, Schema } from "effect"
import * as AgentDecider from "../../core/AgentDecider.ts"
import type { EventLogError, VersionConflict } from "../../core/EventLog.ts"
import { ApiKeyAuthFailureReason, AuthFailureReason } from "../../core/Events.ts"
import { AgentId } from "../../core/Ids.ts"
import { looksLikeApiKey, sha256Hex } from "../../core/Secrets.ts"
import { CAPS, sanitize } from "../../core/Text.ts"
import * as AuthFailures from "../http/AuthFailures.ts"
import * as Agents from "../readmodels/Agents.ts"
import * as ApiKeys from "../readmodels/ApiKeys.ts"

/** Token lifetime and the hub's notion of now (tests move it). */
export interface TokenSettingsShape {
  /** Days a new or rotated agent token is valid (`CONNECT_TOKEN_TTL_DAYS`, default 30). */
  readonly ttlDays: number
  /** The current time. */
  readonly now: () => Date
}

/** Token lifetime and clock of the hub. */
export class TokenSettings extends Context.Tag("connect/hub/TokenSettings")<TokenSettings, TokenSettingsShape>() {}

/** `CONNECT_TOKEN_TTL_DAYS` (default 30) and the system clock. */
export const layerConfig: Layer.Layer<TokenSettings> = Layer.effect(
  TokenSettings,
  Config.integer("CONNECT_TOKEN_TTL_DAYS").pipe(
    Config.withDefault(30),
    Config.validate({ message: "CONNECT_TOKEN_TTL_DAYS must be a positive number of days", validation: (n) => n > 0 }),
    Effect.map((ttlDays) => TokenSettings.of({ ttlDays, now: () => new Date() }))
  )
).pipe(Layer.orDie)

const DAY_MS = 24 * 60 * 60 * 1000

/** The hub's token lifetime in milliseconds: the default, and the longest `--ttl` a key may ask for. */
export const ttlMsOf = (settings: TokenSettingsShape): number => settings.ttlDays * DAY_MS

/** When a token issued at `now` expires. */
export const expiryFrom = (settings: TokenSettingsShape, now: Date): Date => new Date(now.getTime() + ttlMsOf(settings))

/** A credential that was refused; `reason` is what the audit log records for agent tokens. */
export class AuthFailed extends Schema.TaggedError<AuthFailed>()("AuthFailed", {
  reason: Schema.Union(AuthFailureReason, ApiKeyAuthFailureReason),
  message: Schema.String
}) {}

/** An accepted agent token. */
export interface AgentPrincipal {
  readonly agentId: AgentId
  readonly workspaceId: string
  readonly label: string
  /** Until when the presented token is valid. */
  readonly expiresAt: Date
  /** The lifetime of the agent's tokens (`--ttl`, else the hub's default), which caps the expiry warning. */
  readonly ttlMs: number
  /** Whether the presented token is the previous one, still in its rotation grace. */
  readonly previous: boolean
}

/** An accepted API key. */
export interface ApiKeyPrincipal {
  readonly apiKeyId: string
  readonly workspaceId: string
  /** What it may read: its workspace, or every workspace. */
  readonly scope: "workspace" | "operator"
}

/** Stream of refusals of tokens that match no agent (there is no agent stream to put them on). */
export const UNKNOWN_TOKEN_STREAM = AuthFailures.UNKNOWN_TOKEN_STREAM

/** The address part of `ip:port`, `[ip]:port` or a bare address, without an IPv4-mapped prefix. */
export const ipOf = (address: string): string => {
  let ip = address
  const bracket = /^\[(.*)\]:\d+$/.exec(ip)
  if (bracket) ip = bracket[1]!
  else if (/^[^:]+:\d+$/.test(ip)) ip = ip.slice(0, ip.lastIndexOf(":"))
  else if (/^::ffff:\d+\.\d+\.\d+\.\d+:\d+$/.test(ip)) ip = ip.slice(0, ip.lastIndexOf(":"))
  return ip.startsWith("::ffff:") && ip.includes(".") ? ip.slice(7) : ip
}

const messages: Record<typeof AuthFailureReason.Type, string> = {
  unknown_token: "unknown agent token",
  expired_token: "agent token expired",
  revoked_token: "agent token revoked",
  rate_limited: "too many failed attempts from this address; try later"
}

const stateOf = (row: Agents.Credential): AgentDecider.AgentState => ({
  status: row.revoked_at ? "revoked" : "active",
  label: row.label,
  tokenHash: row.token_hash,
  expiresAt: new Date(row.token_expires_at),
  prevTokenHash: row.prev_token_hash ?? undefined,
  prevValidUntil: row.prev_token_valid_until ? new Date(row.prev_token_valid_until) : undefined,
  lastIp: undefined
})

/** Who presented a credential: the address and the user agent (already sanitised and capped). */
export interface Presenter {
  readonly ip: string
  readonly userAgent?: string | undefined
}

const tooMany = (kind: string) =>
  new AuthFailed({ reason: "rate_limited", message: `too many failed ${kind} attempts from this address; try later` })

const lookUpAgent = (token: string) =>
  Effect.gen(function*() {
    const hash = sha256Hex(token)
    return { row: yield* Agents.byTokenHash(hash), hash }
  })

/**
 * Checks an agent token presented by `from`; a refusal is recorded through `failures` (to the agent's stream when the
 * token matches one, else to `auth-unknown`; coalesced past the address's limit) before failing with `AuthFailed`.
 * An address over its limit is refused at once, without a lookup.
 */
export const authenticateAgent = Effect.fn("AgentAuth.authenticateAgent")(function*(
  token: string,
  from: Presenter,
  failures: AuthFailures.AuthFailures
): Effect.fn.Return<
  AgentPrincipal,
  AuthFailed | EventLogError | VersionConflict | SqlError,
  SqlClient.SqlClient | TokenSettings
> {
  if (failures.limited("agent", from.ip, from.userAgent)) return yield* tooMany("authentication")
  const settings = yield* TokenSettings
  const wellFormed = /^[0-9a-f]{64}$/.test(token)
  const { row, hash } = wellFormed ? yield* lookUpAgent(token) : { row: undefined, hash: "" }
  const checked = row
    ? AgentDecider.checkToken(stateOf(row), hash, settings.now())
    : Either.left<typeof AuthFailureReason.Type>("unknown_token")
  if (Either.isRight(checked)) {
    return {
      agentId: AgentId.make(row!.id),
      workspaceId: row!.workspace_id,
      label: row!.label,
      expiresAt: checked.right.expiresAt,
      ttlMs: row!.token_ttl_seconds === null ? settings.ttlDays * DAY_MS : row!.token_ttl_seconds * 1000,
      previous: checked.right.previous
    }
  }
  const reason = checked.left
  yield* failures.record({
    kind: "agent",
    reason,
    ip: from.ip,
    userAgent: from.userAgent,
    agentId: row ? AgentId.make(row.id) : undefined,
    workspaceId: row?.workspace_id,
    tokenPrefix: wellFormed ? token.slice(0, 8) : undefined
  })
  return yield* new AuthFailed({ reason, message: messages[reason] })
})

/**
 * Checks an API key presented by `from`: known by its SHA-256 and not revoked. A refusal is recorded through
 * `failures` as `ApiKeyAuthFailed` (the key's prefix only when it looks like a key); an address over its limit is
 * refused at once, without a lookup.
 */
export const authenticateApiKey = Effect.fn("AgentAuth.authenticateApiKey")(function*(
  key: string,
  from: Presenter,
  failures: AuthFailures.AuthFailures
) {
  if (failures.limited("apikey", from.ip, from.userAgent)) return yield* tooMany("API key")
  const wellFormed = looksLikeApiKey(key)
  const row = wellFormed ? yield* ApiKeys.byHash(sha256Hex(key)) : undefined
  if (row && !row.revoked_at) {
    return { apiKeyId: row.id, workspaceId: row.workspace_id, scope: row.scope } satisfies ApiKeyPrincipal
  }
  const reason = row ? "revoked_api_key" : "unknown_api_key"
  yield* failures.record({
    kind: "apikey",
    reason,
    ip: from.ip,
    userAgent: from.userAgent,
    apiKeyId: row?.id,
    workspaceId: row?.workspace_id,
    keyPrefix: wellFormed ? key.slice(0, 8) : undefined
  })
  return yield* new AuthFailed({ reason, message: row ? "API key revoked" : "unknown API key" })
})

/** The user agent recorded for an agent of `agentVersion` (whatever the agent sent), sanitised and capped. */
export const agentUserAgent = (agentVersion: unknown): string =>
  `connect-agent/${sanitize(agentVersion, CAPS.version)}`
