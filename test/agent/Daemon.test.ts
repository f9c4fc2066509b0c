/**
 * `connect daemon install`: the systemd user unit's content and where it is written.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Daemon from "../../agent/Daemon.ts"

describe("Daemon", () => {
  it("runs `connect up` through the launcher with this node, this CONNECT_HOME, restarting always", () => {
    const text = Daemon.unit({ node: "/usr/bin/node", script: "/opt/connect/bin/connect", home: "/home/ada/.connect" })
    expect(text).toBe(
      [
        "[Unit]",
        "Description=connect agent (exposes and reaches private TCP services through a connect hub)",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        `Environment="CONNECT_HOME=/home/ada/.connect"`,
        `Environment="CONNECT_NODE=/usr/bin/node"`,
        `ExecStart="/opt/connect/bin/connect" "up"`,
        "Restart=always",
        "RestartSec=5",
        "",
        "[Install]",
        "WantedBy=default.target",
        ""
      ].join("\n")
    )
  })

  it("quotes paths with spaces and escapes systemd's % specifiers", () => {
    const text = Daemon.unit({ node: "/opt/my node/node", script: "/srv/100%/bin/connect", home: "/srv/a \"b\"" })
    expect(text).toContain(`ExecStart="/srv/100%%/bin/connect" "up"`)
    expect(text).toContain(`Environment="CONNECT_NODE=/opt/my node/node"`)
    expect(text).toContain(`Environment="CONNECT_HOME=/srv/a \\"b\\""`)
  })

  it.effect("writes ~/.config/systemd/user/connect-agent.service (XDG_CONFIG_HOME honoured)", () =>
    Effect.gen(function*() {
      const config = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-daemon-"))
      const path = Daemon.unitPath({ XDG_CONFIG_HOME: config })
      expect(path).toBe(Path.join(config, "systemd", "user", "connect-agent.service"))
      expect(Daemon.unitPath({})).toBe(Path.join(Os.homedir(), ".config", "systemd", "user", "connect-agent.service"))
      yield* Daemon.install(path, "unit text\n")
      expect(Fs.readFileSync(path, "utf8")).toBe("unit text\n")
      Fs.rmSync(config, { recursive: true, force: true })
    }))

  const options = { node: "/opt/node/bin/node", script: "/Users/ada/connect & co/bin/connect", home: "/Users/ada/.connect" }

  it("on macOS: a launchd agent running `connect up` at login, kept alive, logging to CONNECT_HOME/agent.log", () => {
    const plan = Daemon.plan("darwin", options, {}, "/Users/ada")
    expect(plan.kind).toBe("launchd")
    expect(plan.path).toBe("/Users/ada/Library/LaunchAgents/dev.connect.agent.plist")
    expect(plan.text).toBe(
      [
        `<?xml version="1.0" encoding="UTF-8"?>`,
        `<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">`,
        `<plist version="1.0">`,
        `<dict>`,
        `  <key>Label</key>`,
        `  <string>dev.connect.agent</string>`,
        `  <key>ProgramArguments</key>`,
        `  <array>`,
        `    <string>/Users/ada/connect &amp; co/bin/connect</string>`,
        `    <string>up</string>`,
        `  </array>`,
        `  <key>EnvironmentVariables</key>`,
        `  <dict>`,
        `    <key>CONNECT_HOME</key>`,
        `    <string>/Users/ada/.connect</string>`,
        `    <key>CONNECT_NODE</key>`,
        `    <string>/opt/node/bin/node</string>`,
        `  </dict>`,
        `  <key>RunAtLoad</key>`,
        `  <true/>`,
        `  <key>KeepAlive</key>`,
        `  <true/>`,
        `  <key>ThrottleInterval</key>`,
        `  <integer>5</integer>`,
        `  <key>StandardOutPath</key>`,
        `  <string>/Users/ada/.connect/agent.log</string>`,
        `  <key>StandardErrorPath</key>`,
        `  <string>/Users/ada/.connect/agent.log</string>`,
        `</dict>`,
        `</plist>`,
        ``
      ].join("\n")
    )
    expect(plan.enable).toEqual([["launchctl", "bootstrap", `gui/${process.getuid!()}`, plan.path]])
  })

  it("elsewhere: the systemd user unit, enabled and started with systemctl --user", () => {
    const plan = Daemon.plan("linux", options, { XDG_CONFIG_HOME: "/cfg" })
    expect(plan).toEqual({
      kind: "systemd",
      path: "/cfg/systemd/user/connect-agent.service",
      text: Daemon.unit(options),
      enable: [["systemctl", "--user", "daemon-reload"], ["systemctl", "--user", "enable", "--now", "connect-agent.service"]]
    })
  })

  it.effect("enable runs each command in order; at the first that fails it says why and which commands are left", () =>
    Effect.gen(function*() {
      const steps = Daemon.plan("linux", options, {}).enable
      const ran: Array<string> = []
      const ok: Daemon.Runner = (argv) => Effect.sync(() => (ran.push(argv.join(" ")), { code: 0, stderr: "" }))
      expect(yield* Daemon.enable(steps, ok)).toEqual({ started: true })
      expect(ran).toEqual(["systemctl --user daemon-reload", "systemctl --user enable --now connect-agent.service"])

      const noBus: Daemon.Runner = (argv) =>
        Effect.succeed(argv.includes("enable")
          ? { code: 1, stderr: "Failed to connect to bus: No medium found\nmore" }
          : { code: 0, stderr: "" })
      expect(yield* Daemon.enable(steps, noBus)).toEqual({
        started: false,
        why: "systemctl --user enable --now connect-agent.service exited 1: Failed to connect to bus: No medium found",
        left: ["systemctl --user enable --now connect-agent.service"]
      })
      // No systemctl at all: the real runner cannot start it, and both lines are left to type.
      const missing = yield* Daemon.enable(
        [["connect-test-no-such-systemctl", "--user", "daemon-reload"], ...steps.slice(1)],
        Daemon.systemRunner
      )
      expect(missing).toMatchObject({ started: false, left: ["connect-test-no-such-systemctl --user daemon-reload", steps[1]!.join(" ")] })
      expect((missing as { why: string }).why).toMatch(/^connect-test-no-such-systemctl --user daemon-reload could not run: .*ENOENT/)
    }))
})
