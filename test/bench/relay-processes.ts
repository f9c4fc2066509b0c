/**
 * The processes of the relay benchmarks: each a TypeScript entry point of this folder (hub, agent, target) started
 * with node and bin/connect's tuning, answering on stdin/stdout one JSON line at a time.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Readline from "node:readline"
import { started } from "./Anchors.ts"

const here = Path.dirname(new URL(import.meta.url).pathname)

/** A bench process: its child, the first JSON line it printed, and a way to ask it for one more. */
export interface Proc {
  readonly child: ChildProcess.ChildProcess
  readonly first: Record<string, unknown>
  readonly ask: (line: string) => Promise<Record<string, unknown>>
}

/** Spawns a process and resolves once it printed its first JSON line. */
export const spawn = (command: string, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = process.env): Promise<Proc> =>
  new Promise((resolve, reject) => {
    const child = ChildProcess.spawn(command, args, { stdio: ["pipe", "pipe", "inherit"], env })
    started.push(child)
    const waiting: Array<(value: Record<string, unknown>) => void> = []
    const lines = Readline.createInterface({ input: child.stdout! })
    let first = true
    lines.on("line", (line) => {
      let value: Record<string, unknown>
      try {
        value = JSON.parse(line)
      } catch {
        return
      }
      if (first) {
        first = false
        resolve({
          child,
          first: value,
          ask: (l) =>
            new Promise((r) => {
              waiting.push(r)
              child.stdin!.write(`${l}\n`)
            })
        })
      } else {
        waiting.shift()?.(value)
      }
    })
    child.once("exit", (code) => first && reject(new Error(`${command} ${args.join(" ")} exited with ${code}`)))
  })

/** How a bench process is started: its environment and node's flags. */
export interface Launch {
  readonly env: NodeJS.ProcessEnv
  readonly nodeFlags: ReadonlyArray<string>
}

/**
 * The tuning bin/connect starts node with (GLIBC_TUNABLES and V8 flags), read from that file so that the bench runs
 * the relay the way users get it: bench processes are TypeScript entry points, not `connect` commands, so they cannot
 * go through the launcher itself.
 */
export const launcherTuning = (): { readonly tunables: string; readonly nodeFlags: ReadonlyArray<string> } => {
  const text = Fs.readFileSync(Path.join(here, "../../bin/connect"), "utf8")
  const tunables = /^GLIBC_TUNABLES="([^"$]+)/m.exec(text)
  const flags = /^node_flags="([^"]*)"/m.exec(text)
  if (!tunables || !flags) throw new Error("bin/connect no longer sets its tuning the way this bench reads it")
  return { tunables: tunables[1]!, nodeFlags: flags[1]!.split(" ").filter((f) => f !== "") }
}

/** Starts bench entry point `file` of `dir` (default this folder; another checkout's to measure its code). */
export const node = (
  file: string,
  args: ReadonlyArray<string>,
  nodeArgs: ReadonlyArray<string> = [],
  env: NodeJS.ProcessEnv = process.env,
  dir: string = here
) => spawn(process.execPath, [...nodeArgs, "--import", "tsx", Path.join(dir, file), ...args], env)
