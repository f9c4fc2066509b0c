/**
 * Plain-text tables for terminals: the admin and agent listings and the benchmark reports print their rows through
 * this one function.
 */

/** How `format` lays the cells out. */
export interface TableOptions {
  /** "left" pads after each cell (and cuts the trailing spaces of a line), "right" pads before it (default "left"). */
  readonly align?: "left" | "right"
  /** A line of dashes under the first row (the header). */
  readonly rule?: boolean
  /** Least width of each column, for a column that should not shift with its contents. */
  readonly minWidths?: ReadonlyArray<number>
}

// C0 and C1 controls, DEL, and the bidirectional overrides and isolates: cells hold text others chose (agent labels,
// names asked for); as U+FFFD none of it can move the cursor, clear the screen, end a row or reorder what is shown.
// eslint-disable-next-line no-control-regex
const UNSHOWABLE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g

/**
 * `rows` (the header first) as lines of cells, each column as wide as its widest cell, two spaces apart; control
 * characters in a cell are shown as U+FFFD.
 */
export const format = (table: ReadonlyArray<ReadonlyArray<string>>, options: TableOptions = {}): string => {
  const rows = table.map((row) => row.map((cell) => cell.replace(UNSHOWABLE, "\uFFFD")))
  const columns = Math.max(0, ...rows.map((r) => r.length))
  const widths = Array.from(
    { length: columns },
    (_, i) => Math.max(options.minWidths?.[i] ?? 0, ...rows.map((r) => (r[i] ?? "").length))
  )
  const line = (row: ReadonlyArray<string>) =>
    options.align === "right"
      ? widths.map((w, i) => (row[i] ?? "").padStart(w)).join("  ")
      : widths.map((w, i) => (row[i] ?? "").padEnd(w)).join("  ").trimEnd()
  const lines = rows.map(line)
  if (options.rule && lines.length > 0) lines.splice(1, 0, widths.map((w) => "-".repeat(w)).join("  "))
  return lines.join("\n")
}
