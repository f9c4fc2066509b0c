/**
 * How often the writer announces its commits with NOTIFY (for subscribers in other processes; those in this one wake
 * on the writer's own signal). One notification per commit cost the writer's round trip 0.3–0.5 ms whenever a process
 * listened, and a hub always does. So a batch announces its commit only if the last announcement is at least `paceMs`
 * old; a batch that did not leaves one owed, which a later batch pays, or the writer itself once it has been idle for
 * `paceMs` (`announce`). Another process's subscriber thus learns of a commit within about `paceMs`, and of a burst
 * of commits at least once per `paceMs`.
 */

/** The pacing of one writer's notifications. */
export interface NotifyPacer {
  /** Whether the batch about to be built announces its commit (with `paceMs` 0, always). */
  readonly start: () => boolean
  /** A batch that started with `notify` ended, committed or not. */
  readonly ended: (notify: boolean) => void
  /** Whether an announcement is owed: a commit since the last one went unannounced. */
  readonly owed: () => boolean
  /** Calls `announce` once `paceMs` has passed since the last announcement, unless already waiting to. */
  readonly arm: (announce: () => void) => void
  /** The writer announced the head on its own. */
  readonly sent: () => void
  /** Stops the timer. */
  readonly close: () => void
}

/** A pacer of at most one announcement per `paceMs` (0: every commit announces itself). */
export const make = (paceMs: number): NotifyPacer => {
  let lastAt = -Infinity
  let owed = false
  let timer: ReturnType<typeof setTimeout> | undefined
  return {
    start: () => {
      const now = performance.now()
      if (paceMs > 0 && now - lastAt < paceMs) return false
      lastAt = now
      return true
    },
    ended: (notify) => {
      owed = !notify
    },
    owed: () => owed,
    arm: (announce) => {
      if (timer !== undefined) return
      const wait = Math.max(1, Math.ceil(lastAt + paceMs - performance.now()))
      timer = setTimeout(() => {
        timer = undefined
        announce()
      }, wait)
      // Owed announcements never keep a process alive.
      timer.unref()
    },
    sent: () => {
      owed = false
      lastAt = performance.now()
    },
    close: () => {
      if (timer !== undefined) clearTimeout(timer)
      timer = undefined
    }
  }
}
