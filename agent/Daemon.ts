/**
 * `connect daemon install`: a systemd user unit (a launchd agent on macOS) that runs `connect up` for this
 * CONNECT_HOME at login and restarts it whenever it stops, so exposures and reaches come back after a reboot; and
 * turning it on (systemctl), or the exact commands to do so when that cannot run here.
 */
import * as ChildProcess from "node:child_process"
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

/** Label of the launchd job on macOS (and the name of its plist). */
export const LAUNCHD_LABEL = "dev.connect.agent"

const xml = (text: string): string =>
  text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")

/**
 * The launchd property list (macOS): `connect up` through the launcher for this CONNECT_HOME, started at login and
 * started again whenever it stops, its output appended to `CONNECT_HOME/agent.log`.
 */
export const plist = (options: UnitOptions): string =>
  [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">`,
    `<plist version="1.0">`,
    `<dict>`,
    `  <key>Label</key>`,
    `  <string>${LAUNCHD_LABEL}</string>`,
    `  <key>ProgramArguments</key>`,
    `  <array>`,
    `    <string>${xml(options.script)}</string>`,
    `    <string>up</string>`,
    `  </array>`,
    `  <key>EnvironmentVariables</key>`,
    `  <dict>`,
    `    <key>CONNECT_HOME</key>`,
    `    <string>${xml(options.home)}</string>`,
    `    <key>CONNECT_NODE</key>`,
    `    <string>${xml(options.node)}</string>`,
    `  </dict>`,
    `  <key>RunAtLoad</key>`,
    `  <true/>`,
    `  <key>KeepAlive</key>`,
    `  <true/>`,
    // launchd has no backoff of its own beyond 10 s; the agent backs off by itself while the hub is away.
    `  <key>ThrottleInterval</key>`,
    `  <integer>5</integer>`,
    `  <key>StandardOutPath</key>`,
    `  <string>${xml(Path.join(options.home, "agent.log"))}</string>`,
    `  <key>StandardErrorPath</key>`,
    `  <string>${xml(Path.join(options.home, "agent.log"))}</string>`,
    `</dict>`,
    `</plist>`,
    ``
  ].join("\n")

/** Where the plist goes on macOS: `~/Library/LaunchAgents/dev.connect.agent.plist`. */
export const plistPath = (home: string = Os.homedir()): string =>
  Path.join(home, "Library", "LaunchAgents", `${LAUNCHD_LABEL}.plist`)

/** What `connect daemon install` writes on a platform: the file, its text, and how to turn it on. */
export interface Plan {
  readonly kind: "systemd" | "launchd"
  readonly path: string
  readonly text: string
  /** The commands that enable and start it, as a user types them. */
  readonly enable: ReadonlyArray<ReadonlyArray<string>>
}

/** The plan for `platform` (`process.platform`): a launchd plist on macOS, a systemd user unit elsewhere. */
export const plan = (
  platform: NodeJS.Platform,
  options: UnitOptions,
  env: NodeJS.ProcessEnv = process.env,
  home: string = Os.homedir()
): Plan =>
  platform === "darwin"
    ? {
      kind: "launchd",
      path: plistPath(home),
      text: plist(options),
      // `bootstrap gui/<uid>` is launchctl's current form of `load` for a user's agent.
      enable: [["launchctl", "bootstrap", `gui/${process.getuid?.() ?? "$(id -u)"}`, plistPath(home)]]
    }
    : {
      kind: "systemd",
      path: unitPath(env),
      text: unit(options),
      enable: [["systemctl", "--user", "daemon-reload"], ["systemctl", "--user", "enable", "--now", UNIT_NAME]]
    }

/** Runs a command to its end: its exit code (null when it could not start) and what it said on stderr. */
export type Runner = (argv: ReadonlyArray<string>) => Effect.Effect<{ readonly code: number | null; readonly stderr: string }>

/** `spawnSync` with a 30 s limit: systemctl answers at once, or its user bus is not there. */
export const systemRunner: Runner = (argv) =>
  Effect.sync(() => {
    const r = ChildProcess.spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", timeout: 30_000 })
    return { code: r.error ? null : r.status, stderr: r.error ? messageOf(r.error) : r.stderr }
  })

/**
 * Runs the plan's enable commands in order until one fails: `started` when all ran, else the failure in one line and
 * the commands left (the failed one first) for the user to run.
 */
export const enable = (
  steps: ReadonlyArray<ReadonlyArray<string>>,
  run: Runner
): Effect.Effect<{ readonly started: true } | { readonly started: false; readonly why: string; readonly left: ReadonlyArray<string> }> =>
  Effect.gen(function*() {
    for (const [i, argv] of steps.entries()) {
      const r = yield* run(argv)
      if (r.code !== 0) {
        const said = r.stderr.trim().split("\n")[0] ?? ""
        return {
          started: false,
          why: `${argv.join(" ")} ${r.code === null ? "could not run" : `exited ${r.code}`}${said ? `: ${said}` : ""}`,
          left: steps.slice(i).map((s) => s.join(" "))
        }
      }
    }
    return { started: true }
  })
