/**
 * The running agent's pid file, `CONNECT_HOME/agent.pid`: it names this process while it runs, and is removed at the
 * end only if it still names this process.
 */
import * as Fs from "node:fs"
import { Effect } from "effect"
import type { Scope } from "effect"
import { messageOf } from "../core/ErrorMessage.ts"
import { StateError } from "./State.ts"

/** Writes this process's pid to `path` until the scope closes. */
export const hold = (path: string): Effect.Effect<void, StateError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.try({
      try: () => Fs.writeFileSync(path, `${process.pid}\n`, { mode: 0o644 }),
      catch: (e) => new StateError({ reason: "Write", message: `cannot write ${path}: ${messageOf(e)}` })
    }),
    () =>
      Effect.sync(() => {
        try {
          if (Fs.readFileSync(path, "utf8").trim() === String(process.pid)) Fs.rmSync(path, { force: true })
        } catch {
          // Already gone.
        }
      })
  )
