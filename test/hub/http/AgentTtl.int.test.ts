/**
 * Token lifetimes chosen at provisioning (`connect up --ttl`, `POST /v1/agents {"ttl"}`), against a real hub and
 * Postgres with a clock the test moves: a 5-minute token is recorded with its lifetime and expiry, works until then
 * and is refused (and audited) after; a lifetime out of 5m–30d or malformed is a 400 naming the range; a rotation
 * keeps the agent's lifetime with a grace of a quarter of it; the expiry warning in `Welcome` comes in the token's last
 * quarter, not from its first connection.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as AgentDecider from "../../../core/AgentDecider.ts"
import { EventMeta } from "../../../core/Events.ts"
import { AgentId, Streams, uuidv7 } from "../../../core/Ids.ts"
import { Hello } from "../../../core/Protocol.ts"
import { generateAgentToken, sha256Hex } from "../../../core/Secrets.ts"
import * as Admin from "../../../hub/commands/Admin.ts"
import * as AgentAuth from "../../../hub/commands/AgentAuth.ts"
import * as Command from "../../../hub/commands/Command.ts"
import * as PgRelayPolicy from "../../../hub/relay/PgRelayPolicy.ts"
import * as Spool from "../../../hub/eventlog/Spool.ts"
import * as Hub from "../../support/Hub.ts"
import * as HubLog from "../../support/HubLog.ts"

const MINUTE = 60_000
const DAY = 24 * 60 * MINUTE

describe("agent token lifetime (--ttl)", () => {
  it.scopedLive("a 5-minute token is recorded, works until it expires and is refused after; bad lifetimes are 400s", () =>
    Effect.gen(function*() {
      const start = new Date("2026-06-01T12:00:00.000Z")
      const hub = yield* Hub.start({ start })
      const { apiKey } = yield* hub.workspace("ttl")

      const provisioned = yield* hub.http("POST", "/v1/agents", apiKey, { label: "ci", ttl: "5m" })
      expect(provisioned.status).toBe(201)
      expect(provisioned.body.expiresAt).toBe(new Date(start.getTime() + 5 * MINUTE).toISOString())
      const { agentId, token } = provisioned.body as { agentId: string; token: string }
      // The log keeps the lifetime asked for with the expiry.
      const recorded = (yield* hub.events).find((e) => e.event._tag === "AgentProvisioned" && e.event.agentId === agentId)
      expect(recorded?.event).toMatchObject({ ttlSeconds: 300, expiresAt: new Date(start.getTime() + 5 * MINUTE) })

      expect((yield* hub.http("GET", "/v1/services", token)).status).toBe(200)
      hub.advance(5 * MINUTE - 1000)
      expect((yield* hub.http("GET", "/v1/services", token)).status).toBe(200)
      hub.advance(1000)
      const expired = yield* hub.http("GET", "/v1/services", token)
      expect(expired.status).toBe(401)
      expect(expired.body.error.message).toContain("agent token expired")
      const failures = (yield* hub.events).filter((e) => e.event._tag === "AgentAuthFailed")
      expect(failures.map((e) => e.event)).toEqual([expect.objectContaining({ agentId, reason: "expired_token" })])

      // Out of range, malformed, hostile: a 400 naming the range; nothing provisioned.
      const before = (yield* hub.events).length
      for (const ttl of ["4m", "31d", "721h", "0m", "15", "1w", "-5m", "15m\u0000", "\ud800"]) {
        const refused = yield* hub.http("POST", "/v1/agents", apiKey, { ttl })
        expect(refused.status, ttl).toBe(400)
        expect(refused.body.error.message, ttl).toContain("from 5m to 30d")
      }
      expect((yield* hub.http("POST", "/v1/agents", apiKey, { ttl: "9".repeat(60) + "d" })).status).toBe(400)
      // Past the body limit before any parsing.
      expect((yield* hub.http("POST", "/v1/agents", apiKey, { ttl: "9".repeat(1_000_000) + "d" })).status).toBe(413)
      expect((yield* hub.events).length).toBe(before)

      // Rotation keeps the agent's lifetime (not the hub's 30 days), its grace a quarter of it.
      const short = yield* hub.http("POST", "/v1/agents", apiKey, { label: "short", ttl: "15m" })
      const now = Date.parse(short.body.expiresAt) - 15 * MINUTE
      hub.advance(10 * MINUTE)
      const rotated = yield* hub.http("POST", "/v1/agents/rotate", short.body.token)
      expect(rotated.status).toBe(200)
      expect(rotated.body.expiresAt).toBe(new Date(now + 25 * MINUTE).toISOString())
      expect(rotated.body.oldValidUntil).toBe(new Date(now + 10 * MINUTE + 225_000).toISOString())
      // Without --ttl: the hub's default, 30 days, and the 24 h grace.
      const plain = yield* hub.http("POST", "/v1/agents", apiKey, { label: "plain" })
      const issued = Date.parse(plain.body.expiresAt) - 30 * DAY
      const plainRotated = yield* hub.http("POST", "/v1/agents/rotate", plain.body.token)
      expect(plainRotated.body.expiresAt).toBe(new Date(issued + 30 * DAY).toISOString())
      expect(plainRotated.body.oldValidUntil).toBe(new Date(issued + DAY).toISOString())
    }), { timeout: 120_000 })

  it.scopedLive("the hub's lifetime (CONNECT_TOKEN_TTL_DAYS) is a ceiling: no key asks for longer", () =>
    Effect.gen(function*() {
      const start = new Date("2026-06-01T12:00:00.000Z")
      const hub = yield* Hub.start({ start, ttlDays: 1 })
      const { apiKey } = yield* hub.workspace("ceiling")
      const before = (yield* hub.events).length
      const refused = yield* hub.http("POST", "/v1/agents", apiKey, { label: "long", ttl: "30d" })
      expect(refused.status).toBe(400)
      expect(refused.body.error.message).toContain("at most 1d")
      expect((yield* hub.events).length).toBe(before)
      const allowed = yield* hub.http("POST", "/v1/agents", apiKey, { label: "half", ttl: "12h" })
      expect(allowed.status).toBe(201)
      expect(allowed.body.expiresAt).toBe(new Date(start.getTime() + 12 * 60 * MINUTE).toISOString())
    }), { timeout: 120_000 })

  let now = Date.parse("2026-06-01T12:00:00.000Z")
  const settings = Layer.succeed(AgentAuth.TokenSettings, { ttlDays: 30, now: () => new Date(now) })
  it.layer(Layer.merge(HubLog.layer, settings), { timeout: 60_000 })((it) => {
    it.scoped("the expiry warning comes in the token's last quarter: not when a 15-minute token is new", () =>
      Effect.gen(function*() {
        const dir = yield* Effect.acquireRelease(
          Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-ttl-"))),
          (d) => Effect.sync(() => Fs.rmSync(d, { recursive: true, force: true }))
        )
        const spool = yield* Spool.make(dir)
        const policy = yield* PgRelayPolicy.make({ spool })
        const { workspaceId } = yield* Admin.createWorkspace("warn")
        const agentId = AgentId.make(uuidv7())
        const token = generateAgentToken()
        yield* Command.handle(AgentDecider.decider, Streams.agent(agentId), {
          _tag: "ProvisionAgent",
          agentId,
          label: "short",
          tokenHash: sha256Hex(token),
          expiresAt: new Date(now + 15 * MINUTE),
          ttlMs: 15 * MINUTE
        }, { workspaceId, meta: new EventMeta({ actor: { kind: "admin" } }) })
        const hello = new Hello({ protocol: 1, token, transport: "ws", agentVersion: "test" })
        expect((yield* policy.authenticate(hello, "10.0.0.1:5000")).tokenExpiresAt).toBeUndefined()
        now += 11 * MINUTE
        expect((yield* policy.authenticate(hello, "10.0.0.1:5000")).tokenExpiresAt).toBeUndefined()
        now += 30_000
        expect((yield* policy.authenticate(hello, "10.0.0.1:5000")).tokenExpiresAt).toBe(new Date(now + 3.5 * MINUTE).toISOString())
      }))
  })
})
