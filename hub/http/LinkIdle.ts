/**
 * The idle timeout of forwarded link exchanges without a timer per request: one sweep every `idleMs / 4` (between
 * 50 ms and 1 s) cuts the exchanges that saw no byte either way for `idleMs`, so an exchange is cut between `idleMs`
 * and `idleMs` plus one sweep after its last byte. Setting the timeout on each request's pooled connection instead
 * (`ClientRequest#setTimeout`) cleared and set a timer and added and removed listeners per request: 2.6% of the hub's
 * CPU at 32 clients. The sweep runs only while exchanges are watched.
 */

/** An exchange being watched. */
export interface Watched {
  /** A byte went either way: the exchange is not idle. */
  readonly touch: () => void
  /** The exchange is over: it is no longer watched. */
  readonly stop: () => void
}

/** Watches exchanges for idleness. */
export interface IdleWatch {
  /** Watches an exchange from now; `cut` runs once, when it has been idle for `idleMs`, unless stopped first. */
  readonly watch: (cut: () => void) => Watched
  /** Exchanges watched now. */
  readonly size: () => number
}

/**
 * One watched exchange. A class, so that `touch` and `stop` are not two functions made per request: the hub's bundle
 * keeps function names (esbuild keepNames), which made each of them an Object.defineProperty too.
 */
class Entry implements Watched {
  constructor(
    readonly state: { count: number; readonly entries: Set<Entry> },
    readonly cut: () => void,
    /** The sweep count at the last byte. */
    public at: number
  ) {}
  touch() {
    this.at = this.state.count
  }
  stop() {
    this.state.entries.delete(this)
  }
}

/** Makes a watch with idle timeout `idleMs`. */
export const make = (idleMs: number): IdleWatch => {
  const interval = Math.max(50, Math.min(1_000, Math.floor(idleMs / 4)))
  // Sweeps without a byte after which an exchange is idle: a byte just after a sweep is `sweeps` sweeps old at the
  // sweep that follows `idleMs` later, so it is never cut early.
  const sweeps = Math.max(1, Math.ceil(idleMs / interval))
  const state = { count: 0, entries: new Set<Entry>() }
  const entries = state.entries
  let timer: ReturnType<typeof setInterval> | undefined
  const sweep = () => {
    const count = ++state.count
    for (const entry of entries) {
      if (count - entry.at <= sweeps) continue
      entries.delete(entry)
      try {
        entry.cut()
      } catch {
        // The exchange's own handlers answer for it; the others are still swept.
      }
    }
    if (entries.size === 0 && timer !== undefined) {
      clearInterval(timer)
      timer = undefined
    }
  }
  return {
    watch: (cut) => {
      const entry = new Entry(state, cut, state.count)
      entries.add(entry)
      if (timer === undefined) timer = setInterval(sweep, interval).unref()
      return entry
    },
    size: () => entries.size
  }
}
