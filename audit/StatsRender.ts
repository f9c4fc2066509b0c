/**
 * How `connect audit --stats` prints: a header (position, window, first and last event), a per-day activity bar as a
 * unicode sparkline, and small tables (core/Table.ts) for types, denials, services, agents and source addresses; or one
 * JSON object. Pure. Every text that came from the log goes through `cell`, so no label, name or type can break a
 * table or reach the terminal as a control sequence.
 */
import * as Table from "../core/Table.ts"
import { sanitize } from "../core/Text.ts"
import type { By, DayRow, Stats } from "./Stats.ts"

/** The eight levels of the activity bar, lowest first. */
export const BARS = "▁▂▃▄▅▆▇█"

/** Most cells of the activity bar: a longer window puts several days in a cell. */
export const MAX_CELLS = 60

/**
 * `values` as a sparkline: zero is the lowest bar and any non-zero value at least the second, so a quiet day with one
 * event still shows; the largest value is the full bar.
 */
export const sparkline = (values: ReadonlyArray<number>): string => {
  const max = Math.max(0, ...values)
  return values.map((v) => (v <= 0 || max === 0 ? BARS[0] : BARS[Math.max(1, Math.ceil((v / max) * 7))])).join("")
}

/** The days in cells of `daysPerCell` consecutive days (summed), so that there are at most `maxCells`. */
export const cellsOf = (days: ReadonlyArray<DayRow>, maxCells = MAX_CELLS) => {
  const daysPerCell = Math.max(1, Math.ceil(days.length / maxCells))
  const values: Array<number> = []
  for (let i = 0; i < days.length; i += daysPerCell) {
    values.push(days.slice(i, i + daysPerCell).reduce((n, d) => n + d.events, 0))
  }
  return { daysPerCell, values }
}

// C0 and C1 controls, DEL, and the bidirectional overrides and isolates (which could reorder what a terminal shows).
// eslint-disable-next-line no-control-regex
const UNSHOWABLE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g

/** Text from the log made safe for one table cell: no control character, no lone surrogate, at most `max` code points. */
export const cell = (text: string | null | undefined, max = 40): string =>
  text === null || text === undefined ? "" : sanitize(text, max).replace(UNSHOWABLE, "\uFFFD")

/** A count with thousands separators. */
export const count = (n: number): string => n.toLocaleString("en-US")

/** Bytes in binary units (1.5 MiB). */
export const bytes = (n: number): string => {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
  let v = n
  let u = 0
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024
    u++
  }
  return u === 0 ? `${n} B` : `${v.toFixed(v >= 100 ? 0 : 1)} ${units[u]}`
}

const time = (iso: string): string => `${iso.slice(0, 19).replace("T", " ")}Z`
const hour = (iso: string): string => `${iso.slice(0, 16).replace("T", " ")}Z`

/** The lines above the tables: what the answer covers and its first and last event. */
const header = (s: Stats): Array<string> => {
  const window = `${s.from === null ? "the first event" : hour(s.from)} to ${s.to === null ? "now" : hour(s.to)}`
  const where = s.workspace === null ? "all workspaces" : `workspace ${s.workspace}`
  const ref = (r: Stats["first"]) => (r === null ? "-" : `#${r.position} at ${time(r.at)} (${cell(r.type)})`)
  return [
    `As of position ${s.asOf}: ${count(s.events)} events, ${where}, ${window} (hourly buckets, UTC).`,
    `First event ${ref(s.first)}; last ${ref(s.last)}.`,
    `Token rotations: ${count(s.rotations)}. Agent address changes: ${count(s.ipChanges)}.`
  ]
}

/** The per-day activity bar with its range and scale. */
const activity = (days: ReadonlyArray<DayRow>): Array<string> => {
  if (days.length === 0) return ["Activity per day: no events."]
  const { daysPerCell, values } = cellsOf(days)
  const per = daysPerCell === 1 ? "day" : `${daysPerCell} days`
  return [
    `Activity per ${per}, ${days[0]!.day} to ${days[days.length - 1]!.day} (highest ${count(Math.max(...values))}):`,
    `  ${sparkline(values)}`
  ]
}

const table = (title: string, head: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): Array<string> =>
  rows.length === 0 ? [`${title}: none.`] : [`${title}:`, Table.format([head, ...rows], { rule: true })]

/** The tables of each breakdown. */
const sections = (s: Stats): Record<By, () => Array<string>> => ({
  type: () => {
    const types = [...new Set(s.byType.map((r) => r.type))]
    const of = (type: string, outcome: string) =>
      s.byType.filter((r) => r.type === type && r.outcome === outcome).reduce((n, r) => n + r.events, 0)
    return [
      ...table("Events by type", ["TYPE", "EVENTS", "ALLOWED", "DENIED"], types.map((t) => [
        cell(t), count(of(t, "allowed") + of(t, "denied")), count(of(t, "allowed")), count(of(t, "denied"))
      ])),
      "",
      ...table("Denials by reason", ["TYPE", "REASON", "REFUSALS", "EVENTS"], s.denials.map((r) => [
        cell(r.type), cell(r.reason ?? "-"), count(r.count), count(r.events)
      ]))
    ]
  },
  service: () =>
    table("Services (by bytes relayed)", ["SERVICE", "TUNNELS", "BYTES", "DENIED", "EVENTS"], s.services.map((r) => [
      cell(r.name ?? r.id), count(r.tunnels), bytes(r.bytes), count(r.denied), count(r.events)
    ])),
  agent: () =>
    table("Agents (by events)", ["AGENT", "EVENTS", "TUNNELS", "BYTES", "DENIED", "ROTATIONS", "IP CHANGES"], s.agents.map((r) => [
      cell(r.label ?? r.id), count(r.events), count(r.tunnels), bytes(r.bytes), count(r.denied), count(r.rotations),
      count(r.ipChanges)
    ])),
  ip: () =>
    table(
      `Busiest source addresses${s.masked ? " (masked; --reveal-ips for full)" : ""}`,
      ["ADDRESS", "OCCURRENCES", "EVENTS", "DENIED"],
      s.addresses.map((r) => [cell(r.address, 64), count(r.count), count(r.events), count(r.denied)])
    ),
  day: () => [
    ...activity(s.days),
    "",
    ...table("Events per day", ["DAY", "EVENTS"], s.days.map((d) => [d.day, count(d.events)]))
  ],
  hour: () => table("Events per hour (UTC)", ["HOUR", "EVENTS"], (s.hours ?? []).map((h) => [`${h.hour}:00`, count(h.events)]))
})

/** The human answer: the header, then the `by` breakdown alone, or every section (the activity bar first). */
export const render = (s: Stats, by?: By): string => {
  const all = sections(s)
  const body = by !== undefined
    ? all[by]()
    : [...activity(s.days), "", ...all.type(), "", ...all.service(), "", ...all.agent(), "", ...all.ip()]
  return [...header(s), "", ...body].join("\n")
}

/** The `--json` answer: the stats and the activity bar. */
export const toJson = (s: Stats) => ({ ...s, sparkline: sparkline(cellsOf(s.days).values), daysPerCell: cellsOf(s.days).daysPerCell })
