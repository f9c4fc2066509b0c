/**
 * Shared helpers for benchmarks: medians and percentiles, a plain-text table, and the --json output file.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Table from "../../core/Table.ts"

/** Median of a list of numbers (NaN for an empty list). */
export const median = (xs: ReadonlyArray<number>): number => percentile(xs, 50)

/** The p-th percentile (nearest rank) of a list of numbers. */
export const percentile = (xs: ReadonlyArray<number>, p: number): number => {
  if (xs.length === 0) return Number.NaN
  const sorted = [...xs].sort((a, b) => a - b)
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank]!
}

/** Prints rows of records as an aligned table with the given column order. */
export const printTable = (title: string, columns: ReadonlyArray<string>, rows: ReadonlyArray<Record<string, unknown>>) => {
  const cell = (v: unknown) =>
    typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(Math.abs(v) >= 100 ? 0 : 2)) : String(v ?? "")
  console.log(`\n${title}`)
  console.log(Table.format([columns, ...rows.map((r) => columns.map((c) => cell(r[c])))], { align: "right", rule: true }))
}

/** Parses `--json [FILE]` from bench args; returns the output path or undefined. */
export const jsonPath = (args: ReadonlyArray<string>, name: string): string | undefined => {
  const i = args.indexOf("--json")
  if (i < 0) return undefined
  const next = args[i + 1]
  return next && !next.startsWith("--") ? next : Path.join(".bench", `${name}.json`)
}

/** Writes the figures as JSON to the --json path, if one was asked for. */
export const writeJson = (args: ReadonlyArray<string>, name: string, data: unknown) => {
  const path = jsonPath(args, name)
  if (!path) return
  Fs.mkdirSync(Path.dirname(path), { recursive: true })
  Fs.writeFileSync(path, JSON.stringify({ bench: name, at: new Date().toISOString(), ...(data as object) }, null, 2))
  console.log(`\nwrote ${path}`)
}
