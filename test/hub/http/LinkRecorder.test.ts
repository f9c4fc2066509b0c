/**
 * LinkRecorder makes each request's `LinkAccessed` without the class's constructor (`accessed`, for its cost): what it
 * makes must be what the constructor makes — of the class, equal, and encoded to the same text the log hashes — so
 * that a change in how Effect's classes build their instances shows here, not as different records.
 */
import { describe, expect, it } from "@effect/vitest"
import { Equal } from "effect"
import { encodeEvent, LinkAccessed } from "../../../core/Events.ts"
import { LinkId, ServiceId } from "../../../core/Ids.ts"
import { accessed } from "../../../hub/http/LinkRecorder.ts"

const allowed = {
  linkId: LinkId.make("0190f5c2-0000-7000-8000-000000000001"),
  serviceId: ServiceId.make("0190f5c2-0000-7000-8000-000000000003"),
  ip: "203.0.113.9",
  method: "POST",
  path: "/api/v1/items",
  status: 201,
  outcome: "allowed" as const,
  bytes: 1500,
  durationMs: 12,
  bytesUp: 1000,
  bytesDown: 500
}
const denied = { ip: "203.0.113.9", method: "GET", path: "/x", status: 404, outcome: "denied" as const, reason: "unknown_token" as const, bytes: 0, durationMs: 0 }

describe("LinkRecorder.accessed", () => {
  it.each([["allowed, with a link", allowed], ["denied, without a link", denied]])("%s: the constructor's event", (_, fields) => {
    const fast = accessed(fields)
    const made = new LinkAccessed(fields)
    expect(fast).toBeInstanceOf(LinkAccessed)
    expect(fast._tag).toBe("LinkAccessed")
    expect(Equal.equals(fast, made)).toBe(true)
    expect(JSON.stringify(encodeEvent(fast))).toBe(JSON.stringify(encodeEvent(made)))
    // What the recorder made before (the constructor without validation): the same own properties, in the same order.
    expect(Object.entries(fast)).toEqual(Object.entries(new LinkAccessed(fields, true)))
    // Not the same as another request's.
    expect(Equal.equals(accessed({ ...fields, status: 500 }), made)).toBe(false)
  })
})
