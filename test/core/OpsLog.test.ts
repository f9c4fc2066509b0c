/**
 * The operational log's line formats: ECS fields with the address masked and extra annotations as labels; levels.
 */
import { describe, expect, it } from "@effect/vitest"
import * as OpsLog from "../../core/OpsLog.ts"

describe("OpsLog", () => {
  it("builds an ECS object: ECS names, source.ip masked, the rest as labels", () => {
    const line = OpsLog.ecs({
      date: new Date("2026-01-02T03:04:05.000Z"),
      level: "warn",
      message: "refused",
      service: "connect-hub",
      annotations: [["event.action", "agent-auth-failed"], ["source.ip", "203.0.113.77:4242"], ["agent.id", "a1"]]
    })
    expect(line).toEqual({
      "@timestamp": "2026-01-02T03:04:05.000Z",
      "log.level": "warn",
      message: "refused",
      "service.name": "connect-hub",
      "ecs.version": "8.11.0",
      "event.action": "agent-auth-failed",
      "source.ip": "203.0.113.x",
      labels: { "agent.id": "a1" }
    })
  })

  it("scrubs a JSON line and keeps it JSON", () => {
    const key = `pc_${"a".repeat(40)}`
    const parsed = JSON.parse(OpsLog.jsonLine({ message: `bad key ${key}` })) as { message: string }
    expect(parsed.message).toBe("bad key pc_aaaaaa…[redacted]")
  })

  it("writes a line at or above the threshold, none under none", () => {
    expect(OpsLog.enabled("info", "info")).toBe(true)
    expect(OpsLog.enabled("warn", "info")).toBe(false)
    expect(OpsLog.enabled("debug", "error")).toBe(true)
    expect(OpsLog.enabled("none", "error")).toBe(false)
  })
})
