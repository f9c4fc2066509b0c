/**
 * Real child processes for end-to-end tests: spawn, wait for an output line or for exit (every wait bounded), and
 * kill whatever is left by pid.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as EmbeddedPostgres from "../../hub/db/EmbeddedPostgres.ts"

/** The repository root (where package.json lives). */
export const repoRoot = Path.resolve(import.meta.dirname, "..", "..")

/** A spawned process with its captured output. */
export interface Spawned {
  readonly child: ChildProcess.ChildProcess
  readonly pid: number
  readonly stdout: () => string
  readonly stderr: () => string
  /** Resolves with the first match of `pattern` on stdout or stderr; rejects after `timeoutMs` or if the process exits. */
  readonly waitFor: (pattern: RegExp, timeoutMs?: number) => Promise<RegExpMatchArray>
  /** Resolves with the exit code (null when killed by a signal) and signal; rejects after `timeoutMs`. */
  readonly exited: (timeoutMs?: number) => Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

const tracked = new Set<number>()

/** Whether a process with this pid exists (zombies count as dead). */
export const isAlive = EmbeddedPostgres.isAlive

/** Polls `condition` (sync or async) every `intervalMs`; resolves true when it holds, false after `timeoutMs`. */
export const waitUntil = async (
  condition: () => boolean | Promise<boolean>,
  timeoutMs: number,
  intervalMs = 50
): Promise<boolean> => {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() >= deadline) return false
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
  return true
}

/** Remembers a pid (e.g. a postmaster the test learned about) so {@link killTracked} kills it too. */
export const track = (pid: number): void => {
  tracked.add(pid)
}

/** Spawns `command args` from the repository root with captured output; the pid is tracked for {@link killTracked}. */
export const spawn = (
  command: string,
  args: ReadonlyArray<string>,
  options: { readonly env?: NodeJS.ProcessEnv; readonly cwd?: string } = {}
): Spawned => {
  const child = ChildProcess.spawn(command, args, {
    cwd: options.cwd ?? repoRoot,
    env: options.env ?? process.env,
    stdio: ["ignore", "pipe", "pipe"]
  })
  if (child.pid === undefined) throw new Error(`could not spawn ${command}`)
  const pid = child.pid
  tracked.add(pid)
  let out = ""
  let err = ""
  child.stdout!.on("data", (chunk: Buffer) => (out += chunk.toString()))
  child.stderr!.on("data", (chunk: Buffer) => (err += chunk.toString()))
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => {
      tracked.delete(pid)
      resolve({ code, signal })
    })
  )
  const describe = () => `${command} ${args.join(" ")}\n--- stdout\n${out}\n--- stderr\n${err}`
  return {
    child,
    pid,
    stdout: () => out,
    stderr: () => err,
    waitFor: (pattern, timeoutMs = 30_000) =>
      new Promise((resolve, reject) => {
        let done = false
        const check = () => {
          const match = out.match(pattern) ?? err.match(pattern)
          if (match && !done) finish(() => resolve(match))
        }
        const finish = (f: () => void) => {
          done = true
          clearTimeout(timer)
          child.stdout!.off("data", check)
          child.stderr!.off("data", check)
          f()
        }
        const timer = setTimeout(
          () => finish(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${pattern}: ${describe()}`))),
          timeoutMs
        )
        child.stdout!.on("data", check)
        child.stderr!.on("data", check)
        void exit.then(({ code, signal }) => {
          check()
          if (!done) finish(() => reject(new Error(`exited (${code ?? signal}) before ${pattern}: ${describe()}`)))
        })
        check()
      }),
    exited: (timeoutMs = 30_000) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`still running after ${timeoutMs} ms: ${describe()}`)),
          timeoutMs
        )
        void exit.then((result) => {
          clearTimeout(timer)
          resolve(result)
        })
      })
  }
}

/** SIGKILLs every tracked process still alive (for afterAll). */
export const killTracked = (): void => {
  for (const pid of tracked) {
    if (isAlive(pid)) {
      try {
        process.kill(pid, "SIGKILL")
      } catch {
        // Gone meanwhile.
      }
    }
  }
  tracked.clear()
}
