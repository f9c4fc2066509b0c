/**
 * The progress line of a long `connect audit verify` on a terminal: a bar, the share done, the count, the rate and the
 * time left, redrawn in place on stderr.
 */

const WIDTH = 24

const grouped = (n: number) => Math.round(n).toLocaleString("en-US")

/** Seconds as `12s`, `3m05s` or `1h02m`. */
export const formatSeconds = (seconds: number): string => {
  const s = Math.max(0, Math.round(seconds))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`
}

/** One progress line: `[█████░░░]  42%  420,000/1,000,000 events  210,000 ev/s  ETA 3s`. */
export const render = (done: number, total: number, elapsedMs: number): string => {
  const fraction = total > 0 ? Math.min(1, done / total) : 1
  const filled = Math.round(fraction * WIDTH)
  const rate = elapsedMs > 0 ? done / (elapsedMs / 1000) : 0
  const eta = rate > 0 ? formatSeconds((total - done) / rate) : "?"
  return `[${"█".repeat(filled)}${"░".repeat(WIDTH - filled)}] ${String(Math.floor(fraction * 100)).padStart(3)}%  ` +
    `${grouped(done)}/${grouped(total)} events  ${grouped(rate)} ev/s  ETA ${eta}`
}
