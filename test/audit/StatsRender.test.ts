/**
 * How `connect audit --stats` prints: the activity bar's levels and cells, the header and tables, one breakdown alone
 * with --by, and text from the log that must not break a table or reach the terminal as a control sequence.
 */
import { describe, expect, it } from "vitest"
import type { Stats } from "../../audit/Stats.ts"
import * as StatsRender from "../../audit/StatsRender.ts"

const sample = (overrides: Partial<Stats> = {}): Stats => ({
  asOf: 1234,
  from: "2026-11-28T00:00:00.000Z",
  to: null,
  workspace: null,
  events: 1200,
  first: { position: 35, at: "2026-11-28T00:12:03.000Z", type: "WorkspaceCreated" },
  last: { position: 1234, at: "2026-11-30T09:59:59.000Z", type: "TunnelClosed" },
  byType: [
    { type: "TunnelOpened", outcome: "allowed", events: 500, count: 500 },
    { type: "TunnelClosed", outcome: "allowed", events: 490, count: 490 },
    { type: "TunnelClosed", outcome: "denied", events: 10, count: 10 },
    { type: "AgentAuthFailed", outcome: "denied", events: 200, count: 9000 }
  ],
  denials: [
    { type: "AgentAuthFailed", reason: "unknown_token", count: 9000, events: 200 },
    { type: "TunnelClosed", reason: "connect_failed", count: 10, events: 10 }
  ],
  services: [{ id: "0193-svc", name: "prod-db", tunnels: 500, bytes: 5 * 1024 * 1024 * 1024, denied: 10, events: 1000 }],
  agents: [{ id: "0193-agent", label: "build-box", events: 1000, tunnels: 500, bytes: 1536, denied: 0, rotations: 1, ipChanges: 2 }],
  addresses: [{ address: "203.0.113.x", count: 9000, events: 200, denied: 9000 }],
  masked: true,
  rotations: 1,
  ipChanges: 2,
  days: [{ day: "2026-11-28", events: 0 }, { day: "2026-11-29", events: 100 }, { day: "2026-11-30", events: 1100 }],
  ...overrides
})

describe("the activity bar", () => {
  it("scales to the highest value: zero is the lowest bar, any activity at least the second, the highest full", () => {
    expect(StatsRender.sparkline([0, 1, 2, 4, 8])).toBe("▁▂▃▅█")
    expect(StatsRender.sparkline([0, 0])).toBe("▁▁")
    expect(StatsRender.sparkline([1, 1_000_000])).toBe("▂█")
    expect(StatsRender.sparkline([])).toBe("")
  })

  it("puts several days in a cell past 60 days, summed", () => {
    const days = Array.from({ length: 90 }, (_, i) => ({ day: `d${i}`, events: i === 89 ? 10 : 1 }))
    const { daysPerCell, values } = StatsRender.cellsOf(days)
    expect(daysPerCell).toBe(2)
    expect(values).toHaveLength(45)
    expect(values[0]).toBe(2)
    expect(values[44]).toBe(11)
    expect(StatsRender.cellsOf(days.slice(0, 30)).values).toHaveLength(30)
  })
})

describe("the human answer", () => {
  it("says as of which position, the window, first and last event, then the bar and every table", () => {
    const text = StatsRender.render(sample())
    const lines = text.split("\n")
    expect(lines[0]).toBe("As of position 1234: 1,200 events, all workspaces, 2026-11-28 00:00Z to now (hourly buckets, UTC).")
    expect(lines[1]).toBe("First event #35 at 2026-11-28 00:12:03Z (WorkspaceCreated); last #1234 at 2026-11-30 09:59:59Z (TunnelClosed).")
    expect(text).toContain("Activity per day, 2026-11-28 to 2026-11-30 (highest 1,100):\n  ▁▂█")
    expect(text).toMatch(/TYPE\s+EVENTS\s+ALLOWED\s+DENIED\n[- ]+\nTunnelOpened\s+500\s+500\s+0\nTunnelClosed\s+500\s+490\s+10/)
    expect(text).toMatch(/AgentAuthFailed\s+unknown_token\s+9,000\s+200/)
    expect(text).toMatch(/prod-db\s+500\s+5\.0 GiB\s+10\s+1,000/)
    expect(text).toMatch(/build-box\s+1,000\s+500\s+1\.5 KiB\s+0\s+1\s+2/)
    expect(text).toContain("Busiest source addresses (masked; --reveal-ips for full):")
    expect(text).toMatch(/203\.0\.113\.x\s+9,000\s+200\s+9,000/)
  })

  it("--by shows the header and that breakdown only; an empty list says none", () => {
    const text = StatsRender.render(sample({ services: [] }), "service")
    expect(text).toContain("Services (by bytes relayed): none.")
    expect(text).not.toContain("Events by type")
    expect(text).not.toContain("Agents")
    const days = StatsRender.render(sample(), "day")
    expect(days).toMatch(/DAY\s+EVENTS\n[- ]+\n2026-11-28\s+0\n2026-11-29\s+100\n2026-11-30\s+1,100/)
  })

  it("an unknown agent or service shows its id; an empty log has no bar", () => {
    const text = StatsRender.render(sample({ agents: [{ ...sample().agents[0]!, label: null }], days: [], first: null, last: null }))
    expect(text).toContain("0193-agent")
    expect(text).toContain("Activity per day: no events.")
    expect(text).toContain("First event -; last -.")
  })

  it("hostile labels, names, types and addresses (NUL, lone surrogates, escapes, bidi overrides, 1 MB) stay in their cell", () => {
    const huge = "A".repeat(1_000_000)
    const hostile = [`a\u0000b`, `\ud800x`, `x\udc00`, `\u001b[2J\u001b[31mred`, `\u202eevil`, `new\nline`, huge]
    const text = StatsRender.render(sample({
      byType: hostile.map((type) => ({ type, outcome: "allowed", events: 1, count: 1 })),
      denials: hostile.map((reason) => ({ type: "ReachDenied", reason, count: 1, events: 1 })),
      services: hostile.map((name, i) => ({ id: `s${i}`, name, tunnels: 1, bytes: 1, denied: 0, events: 1 })),
      agents: hostile.map((label, i) => ({ id: `a${i}`, label, events: 1, tunnels: 0, bytes: 0, denied: 0, rotations: 0, ipChanges: 0 })),
      addresses: hostile.map((address) => ({ address, count: 1, events: 1, denied: 0 })),
      first: { position: 1, at: "2026-11-28T00:12:03.000Z", type: huge }
    }))
    expect(text.length).toBeLessThan(10_000)
    // eslint-disable-next-line no-control-regex
    expect(text).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/)
    expect(text).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/)
    expect(Math.max(...text.split("\n").map((l) => l.length))).toBeLessThan(200)
    expect(text).toContain(`${"A".repeat(39)}…`)
    // Each row is one line: the agents table has its header, its rule and one line per agent.
    const agents = text.slice(text.indexOf("Agents (by events):")).split("\n\n")[0]!.split("\n")
    expect(agents).toHaveLength(2 + 1 + hostile.length)
  })
})

describe("the --json answer", () => {
  it("is the stats with the bar", () => {
    const json = StatsRender.toJson(sample())
    expect(json).toMatchObject({ asOf: 1234, events: 1200, sparkline: "▁▂█", daysPerCell: 1, masked: true })
    expect(JSON.parse(JSON.stringify(json)).agents[0].label).toBe("build-box")
  })

  it("formats counts and bytes", () => {
    expect(StatsRender.count(1234567)).toBe("1,234,567")
    expect(StatsRender.bytes(0)).toBe("0 B")
    expect(StatsRender.bytes(1023)).toBe("1023 B")
    expect(StatsRender.bytes(1024 * 1024 * 150)).toBe("150 MiB")
  })
})
