/**
 * `connect daemon install`: a systemd user unit that runs `connect up` for this CONNECT_HOME at login and restarts
 * it whenever it stops, so exposures and reaches come back after a reboot.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Effect, Schema } from "effect"
import { messageOf } from "../core/ErrorMessage.ts"

/** Name of the unit. */
export const UNIT_NAME = "connect-agent.service"

/** Why the unit could not be written. */
export class DaemonError extends Schema.TaggedError<DaemonError>()("DaemonError", {
  message: Schema.String
}) {}

/** What the unit runs. */
export interface UnitOptions {
  /** The node executable the launcher runs (as CONNECT_NODE: systemd's PATH may not hold it). */
  readonly node: string
  /** Absolute path of the launcher, bin/connect (it sets the malloc and V8 tuning the relay needs; see that file). */
  readonly script: string
  /** CONNECT_HOME of the agent. */
  readonly home: string
}

// systemd splits ExecStart on spaces and expands % specifiers; quote every word and double the percent signs.
const quote = (word: string): string => `"${word.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/%/g, "%%")}"`

/** The unit file text. */
export const unit = (options: UnitOptions): string =>
  [
    "[Unit]",
    "Description=connect agent (exposes and reaches private TCP services through a connect hub)",
    "Wants=network-online.target",
    "After=network-online.target",
    "",
    "[Service]",
    "Type=simple",
    `Environment=${quote(`CONNECT_HOME=${options.home}`)}`,
    `Environment=${quote(`CONNECT_NODE=${options.node}`)}`,
    `ExecStart=${[options.script, "up"].map(quote).join(" ")}`,
    "Restart=always",
    // The agent backs off by itself while the hub is away; this only covers the process dying.
    "RestartSec=5",
    "",
    "[Install]",
    "WantedBy=default.target",
    ""
  ].join("\n")

/** Where the unit goes: `$XDG_CONFIG_HOME/systemd/user` (default `~/.config/systemd/user`). */
export const unitPath = (env: NodeJS.ProcessEnv = process.env): string =>
  Path.join(env.XDG_CONFIG_HOME || Path.join(Os.homedir(), ".config"), "systemd", "user", UNIT_NAME)

/** Writes the unit file and returns its path. */
export const install = (path: string, text: string): Effect.Effect<string, DaemonError> =>
  Effect.try({
    try: () => {
      Fs.mkdirSync(Path.dirname(path), { recursive: true })
      Fs.writeFileSync(path, text, { mode: 0o644 })
      return path
    },
    catch: (e) => new DaemonError({ message: `cannot write ${path}: ${messageOf(e)}` })
  })
