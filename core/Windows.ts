/**
 * Coalescing windows: occurrences counted by key for a fixed time, each window written once when it ends, and every
 * open one written when the scope closes. What `ReachDenials` and `AuthFailures` have in common, so that a refusal a
 * stranger can repeat 10,000 times costs one event per key and window, never one per attempt.
 */
import { Effect, FiberSet, Schedule } from "effect"
import type { Scope } from "effect"

/** Options of `make`. */
export interface WindowsOptions<W> {
  /** Length of a window in ms. */
  readonly windowMs: number
  /** The clock in ms. */
  readonly now: () => number
  /** Writes a window that ended (or is open when the scope closes); failures are the writer's to report. */
  readonly write: (window: W) => Effect.Effect<void>
  /** Called on every periodic check with the time, for state that expires with the windows. */
  readonly tick?: (now: number) => void
}

/** Open windows by key. */
export interface Windows<W> {
  /**
   * The open window of `key`, or a new one from `open` when there is none or it has ended (an ended one is written
   * first). `fresh` is true for a new window: the caller records its first occurrence itself, at once.
   */
  readonly at: (key: string, open: (now: number) => W) => { readonly window: W; readonly fresh: boolean }
  /** Runs `effect` in the background; the scope's close waits for it (after the close, it runs on a fiber of its own). */
  readonly fork: (effect: Effect.Effect<void>) => void
  /** Number of open windows. */
  readonly size: () => number
}

/** Makes the windows; checked every second, and all written when the scope closes. */
export const make = <W extends { readonly startedAt: number }>(
  options: WindowsOptions<W>
): Effect.Effect<Windows<W>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const windows = new Map<string, W>()
    const fibers = yield* FiberSet.make<void>()
    const runFork = yield* FiberSet.runtime(fibers)<never>()

    const flushDue = (all: boolean) =>
      Effect.suspend(() => {
        const t = options.now()
        options.tick?.(t)
        // Taken out of the map at once: an occurrence counted while these are being written opens a new window
        // instead of adding to one already on its way.
        const due = [...windows].filter(([, w]) => all || t - w.startedAt >= options.windowMs)
        for (const [key] of due) windows.delete(key)
        return Effect.forEach(due, ([, w]) => options.write(w), { discard: true })
      })

    // After the scope's close, work handed over still runs, on a fiber of its own: a record of something that happened
    // (its effect appends or spools it) must not be dropped because it came a tick late, as a link exchange cut by the
    // stop reports itself on a later tick. The fiber set would interrupt it unstarted.
    let closed = false
    const start = (effect: Effect.Effect<void>) => {
      if (closed) Effect.runFork(effect)
      else runFork(effect)
    }

    yield* Effect.repeat(flushDue(false), Schedule.spaced("1 second")).pipe(Effect.forkScoped)
    // Runs before the event log closes (it was acquired first): open windows and writes in flight are finished.
    yield* Effect.addFinalizer(() =>
      Effect.zipRight(flushDue(true), FiberSet.awaitEmpty(fibers)).pipe(Effect.ensuring(Effect.sync(() => void (closed = true))))
    )

    return {
      at: (key, open) => {
        const t = options.now()
        const current = windows.get(key)
        if (current && t - current.startedAt < options.windowMs) return { window: current, fresh: false }
        if (current) start(options.write(current))
        const window = open(t)
        windows.set(key, window)
        return { window, fresh: true }
      },
      fork: start,
      size: () => windows.size
    }
  })
