/**
 * `GET /v1/audit/events` under hostile input: every malformed filter is a 400 naming it (a request line past node's
 * header limit a 431), never a 500 and never a read; 10,000 requests with bad keys are refused and recorded aggregated,
 * as every refused API key is.
 */
import * as Crypto from "node:crypto"
import * as Net from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import Pg from "pg"
import * as AuditApi from "../../audit/AuditApi.ts"
import * as Hub from "../support/Hub.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

/** A raw query string and the status and message (a substring) it must be answered with. */
const HOSTILE: ReadonlyArray<readonly [string, number, string]> = [
  ["agent=a%00b", 400, "agent: contains a control character"],
  ["service=%00", 400, "service: contains a control character"],
  ["since=%ED%A0%80", 400, "is not a time"],
  ["agent=%0A%0D", 400, "agent: contains a control character"],
  ["limit=1e9", 400, "limit must be a whole number from 1 to 1000"],
  ["limit=1001", 400, "limit must be a whole number from 1 to 1000"],
  ["limit=0", 400, "limit must be a whole number from 1 to 1000"],
  ["limit=NaN", 400, "limit must be a whole number from 1 to 1000"],
  ["limit=abc", 400, "limit: Unable to decode"],
  ["before=-1", 400, "before must be a position"],
  ["before=0.5", 400, "before must be a position"],
  ["before=1e300", 400, "before must be a position"],
  ["type=NoSuchEvent", 400, `type: unknown type or group "NoSuchEvent"`],
  ["type=agent&type=auth", 400, "type: Expected string"],
  ["outcom=denied", 400, "outcom: is unexpected"],
  ["workspace=../../etc", 400, "is not a workspace id"],
  ["ip=999.0.0.1", 400, "is not an address or prefix"],
  ["since=2026-02-30", 400, "is not a time"],
  [`agent=${"a".repeat(10_000)}`, 400, "agent: too long (10000 characters, at most 256)"],
  [`service=${"%F0%9F%98%80".repeat(1_000)}`, 400, "service: too long"],
  [`agent=${"a".repeat(15_000)}`, 400, "agent: too long (15000 characters, at most 256)"]
]

const get = (url: string, key: string) =>
  Effect.promise(async () => {
    const response = await fetch(url, { headers: { authorization: `Bearer ${key}` } })
    const text = await response.text()
    return { status: response.status, body: text === "" ? undefined : JSON.parse(text) }
  })

/**
 * `GET path` on a raw socket, the answer read until the server closes: the status (0 if the server reset the
 * connection before answering, which a server refusing a huge request line may do) and the body.
 */
const rawGet = (port: number, path: string, key: string) =>
  Effect.async<{ status: number; body: string }>((resume) => {
    const socket = Net.connect(port, "127.0.0.1")
    let answer = ""
    const finish = () => {
      socket.destroy()
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0)
      resume(Effect.succeed({ status, body: answer.slice(answer.indexOf("\r\n\r\n") + 4) }))
    }
    socket.on("data", (chunk) => (answer += chunk.toString("latin1")))
    socket.on("error", finish)
    socket.on("close", finish)
    socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nConnection: close\r\n\r\n`)
    return Effect.sync(() => socket.destroy())
  })

describe("GET /v1/audit/events, hostile input", () => {
  it.scopedLive("answers every malformed filter with a clear 400 (431 past the header limit), never a 500, and reads nothing", () =>
    Effect.gen(function*() {
      const hub = yield* Hub.start({ auditRoutes: AuditApi.layer })
      const w = yield* hub.workspace("w")
      const readsBefore = (yield* hub.events).filter((e) => e.event._tag === "AuditRead").length
      for (const [query, status, message] of HOSTILE) {
        const answer = yield* get(`${hub.httpUrl}/v1/audit/events?${query}`, w.apiKey)
        expect({ query: query.slice(0, 40), status: answer.status }).toEqual({ query: query.slice(0, 40), status })
        expect(answer.body.error.code).toBe("BadRequest")
        expect(answer.body.error.message).toContain(message)
        expect(answer.body.error.message.length).toBeLessThan(2_000)
      }
      // A 1 MB value: past node's 16 KiB header limit its parser refuses the request before any handler, with 431 in
      // the API's shape (or a reset, if it closes while the request is still arriving) — never a 500.
      const huge = yield* rawGet(hub.port, `/v1/audit/events?agent=${"a".repeat(1_000_000)}`, w.apiKey)
      expect([0, 431]).toContain(huge.status)
      if (huge.status === 431) expect(JSON.parse(huge.body).error.code).toBe("HeadersTooLarge")
      // A lone surrogate cannot cross a URL (UTF-8 has none): what arrives is U+FFFD, a label like any other.
      const lone = new URLSearchParams({ agent: "x\uD800" }).toString()
      expect(lone).toBe("agent=x%EF%BF%BD")
      const replaced = yield* get(`${hub.httpUrl}/v1/audit/events?${lone}`, w.apiKey)
      expect(replaced).toEqual({ status: 200, body: { events: [], next: null } })
      // Nothing refused was a read; the one answered query was, and the hub still answers.
      const reads = (yield* hub.events).filter((e) => e.event._tag === "AuditRead")
      expect(reads.length - readsBefore).toBe(1)
      expect((yield* get(`${hub.httpUrl}/v1/audit/events?limit=1`, w.apiKey)).status).toBe(200)
    }), 120_000)

  it.scopedLive("10,000 requests with bad API keys are refused and recorded aggregated", () =>
    Effect.gen(function*() {
      // The hub runs in its own scope: closing it flushes the open windows, read here from the database it leaves.
      const databaseUrl = yield* TestDatabase.makeTestDatabaseUrl
      const statuses = yield* Effect.scoped(Effect.gen(function*() {
        const hub = yield* Hub.start({ databaseUrl, auditRoutes: AuditApi.layer })
        const statuses = new Map<number, number>()
        const one = (n: number) =>
          Effect.map(get(`${hub.httpUrl}/v1/audit/events?type=auth`, `pc_${Crypto.randomBytes(30).toString("hex")}${n}`), (a) => {
            statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1)
          })
        const started = Date.now()
        yield* Effect.forEach(Array.from({ length: 10_000 }, (_, n) => n), one, { concurrency: 16, discard: true })
        console.log(`10,000 bad keys on /v1/audit/events: ${Date.now() - started} ms, statuses ${JSON.stringify([...statuses])}`)
        return statuses
      }))
      expect([...statuses.keys()].sort()).toEqual([401, 429])
      const client = new Pg.Client({ connectionString: databaseUrl })
      yield* Effect.promise(() => client.connect())
      const rows = yield* Effect.promise(() =>
        client.query(`select type, data from events where type in ('ApiKeyAuthFailed', 'AuditRead')`).finally(() => client.end())
      ).pipe(Effect.map((r) => r.rows as Array<{ type: string; data: { count?: number; ip: string } }>))
      const failures = rows.filter((r) => r.type === "ApiKeyAuthFailed")
      console.log(`10,000 bad keys recorded as ${failures.length} events`)
      expect(failures.reduce((sum, r) => sum + (r.data.count ?? 1), 0)).toBe(10_000)
      // One event per refusal while the address has allowance, then one per 10 s window: bounded by time, not requests.
      expect(failures.length).toBeLessThan(100)
      expect(rows.filter((r) => r.type === "AuditRead")).toEqual([])
    }), 300_000)
})
