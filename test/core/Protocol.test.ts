/**
 * The wire protocol schemas: every message decodes from its encoded form, and invalid shapes are refused.
 */
import { describe, expect, it } from "@effect/vitest"
import { Either, Schema } from "effect"
import * as P from "../../core/Protocol.ts"

const sampleReport: P.CheckReport = {
  host: "localhost",
  port: 5432,
  dns: { ok: true, ms: 0.4, detail: "localhost → 127.0.0.1" },
  tcp: { ok: true, ms: 0.3, detail: "127.0.0.1:5432" },
  tls: { ok: false, ms: 1.2, detail: "not TLS (plain TCP service)" },
  http: { ok: false, ms: 2.5, detail: "not HTTP" },
  ok: true,
  elapsedMs: 4.6
}

/** One instance of every message of the protocol. */
export const everyMessage: ReadonlyArray<P.Message> = [
  new P.Hello({ protocol: P.PROTOCOL_VERSION, token: "ab".repeat(32), transport: "msgpack", agentVersion: "1.0.0", label: "db-host" }),
  new P.Hello({ protocol: P.PROTOCOL_VERSION, token: "t", transport: "ws", agentVersion: "dev" }),
  new P.Welcome({ agentId: "a1", workspaceId: "w1", protocol: 1, heartbeatMs: 15_000, tokenExpiresAt: "2026-01-01T00:00:00.000Z" }),
  new P.Welcome({ agentId: "a1", workspaceId: "w1", protocol: 1, heartbeatMs: 15_000 }),
  new P.Expose({ request: 1, name: "prod-db", host: "localhost", port: 5432 }),
  new P.Unexpose({ request: 2, name: "prod-db" }),
  new P.Reach({ request: 3, name: "prod-db" }),
  new P.Check({ request: 4, name: "prod-db" }),
  new P.Probe({ request: 1, service: "prod-db" }),
  new P.ProbeResult({ request: 1, report: sampleReport }),
  new P.CheckResult({ request: 4, report: sampleReport }),
  new P.Ack({ request: 3 }),
  new P.Open({ stream: 1, service: "prod-db" }),
  new P.Opened({ stream: 2 }),
  new P.Data({ stream: 0xffff_ffff, payload: new Uint8Array([0, 1, 2, 255]) }),
  new P.Credit({ stream: 7, bytes: P.STREAM_WINDOW }),
  new P.Window({ bytes: P.WINDOW_GRANT }),
  new P.End({ stream: 7 }),
  new P.Reset({ stream: 7, reason: "ECONNRESET" }),
  new P.Ping({ nonce: 42 }),
  new P.Pong({ nonce: 42 }),
  new P.Error({ code: "ServiceNotFound", message: "Service not found: x", stream: 5 }),
  new P.Error({ code: "Conflict", message: "taken", request: 9 }),
  new P.Error({ code: "Unauthorized", message: "unknown agent token" })
]

describe("Protocol", () => {
  it("covers every message tag", () => {
    const tags = new Set(everyMessage.map((m) => m._tag))
    expect([...tags].sort()).toEqual(P.Message.members.map((m) => m.identifier).sort())
  })

  it("round-trips every message through its encoded form", () => {
    for (const message of everyMessage) {
      const encoded = Schema.encodeSync(P.Message)(message)
      const decoded = Schema.decodeUnknownSync(P.Message)(encoded)
      expect(decoded).toEqual(message)
      expect(decoded).toBeInstanceOf(message.constructor)
    }
  })

  it("refuses invalid stream ids, credits and ports", () => {
    const decode = Schema.decodeUnknownEither(P.Message)
    expect(Either.isLeft(decode({ _tag: "Data", stream: 0, payload: new Uint8Array(1) }))).toBe(true)
    expect(Either.isLeft(decode({ _tag: "Data", stream: 2 ** 32, payload: new Uint8Array(1) }))).toBe(true)
    expect(Either.isLeft(decode({ _tag: "Credit", stream: 1, bytes: 0 }))).toBe(true)
    expect(Either.isLeft(decode({ _tag: "Credit", stream: 1, bytes: 1.5 }))).toBe(true)
    expect(Either.isLeft(decode({ _tag: "Credit", stream: 1, bytes: P.STREAM_WINDOW + 1 }))).toBe(true)
    expect(Either.isLeft(decode({ _tag: "Credit", stream: 1, bytes: 2 ** 32 }))).toBe(true)
    expect(Either.isLeft(decode({ _tag: "Expose", request: 1, name: "x", host: "h", port: 70_000 }))).toBe(true)
    expect(Either.isLeft(decode({ _tag: "Nope" }))).toBe(true)
    expect(Either.isRight(decode({ _tag: "Credit", stream: 1, bytes: 10 }))).toBe(true)
  })
})
