import { describe, expect, it } from "vitest"
import { AgentConnected, encodeEvent, EventMeta, ReachDenied } from "../../core/Events.ts"
import { AgentId } from "../../core/Ids.ts"
import { recordableEvent, recordableEvents, recordableMeta } from "../../core/RecordableEvent.ts"
import { isRecordable } from "../../core/Text.ts"

const agentId = AgentId.make("0190a0b0-0000-7000-8000-000000000001")

const strings = (value: unknown): Array<string> =>
  typeof value === "string"
    ? [value]
    : Array.isArray(value)
    ? value.flatMap(strings)
    : value !== null && typeof value === "object" && !(value instanceof Date)
    ? Object.values(value).flatMap(strings)
    : []

describe("RecordableEvent", () => {
  it("returns the same event and meta when every string is recordable", () => {
    const event = new ReachDenied({ requestedName: "db-😀", reason: "not_found", sample: ["db-😀", "x"] })
    const meta = new EventMeta({ actor: { kind: "agent", id: agentId }, userAgent: "connect-agent/1" })
    expect(recordableEvent(event)).toBe(event)
    expect(recordableMeta(meta)).toBe(meta)
    const events = [event]
    expect(recordableEvents(events)).toBe(events)
  })

  it.each([["NUL", "a\u0000b"], ["lone high", "a\uD800b"], ["lone low", "a\uDC00b"], ["reversed pair", "\uDC00\uD800"]])(
    "replaces %s in every string field, nested arrays and meta, keeping the class",
    (_, bad) => {
      const event = new ReachDenied({ requestedName: bad, reason: "not_found", sample: [bad, "ok"], count: 2 })
      const fixed = recordableEvent(event)
      expect(fixed).toBeInstanceOf(ReachDenied)
      expect(fixed._tag).toBe("ReachDenied")
      expect(strings(encodeEvent(fixed).data).every(isRecordable)).toBe(true)
      expect(fixed.sample![1]).toBe("ok")
      expect(fixed.count).toBe(2)
      const connected = recordableEvent(new AgentConnected({ agentId, ip: "1.2.3.4", userAgent: bad, transport: bad }))
      expect(strings(encodeEvent(connected).data).every(isRecordable)).toBe(true)
      const meta = recordableMeta(new EventMeta({ actor: { kind: "agent", id: bad }, sourceIp: "1.2.3.4", userAgent: bad }))
      expect(meta).toBeInstanceOf(EventMeta)
      expect(strings(meta).every(isRecordable)).toBe(true)
      expect(meta.sourceIp).toBe("1.2.3.4")
    }
  )
})
