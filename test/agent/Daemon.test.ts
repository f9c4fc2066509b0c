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
})
