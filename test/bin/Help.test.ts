/**
 * `connect --help` as a user reads it (a real `connect` process): every command once, one line each with what it
 * does, on one screen; a parent's options are never repeated in front of its subcommands; a group's help lists its
 * subcommands the same way and a subcommand's usage names only its own options.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { killTracked, spawn } from "../support/processes.ts"

interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

const connect = async (args: ReadonlyArray<string>): Promise<Run> => {
  const cli = spawn(process.execPath, ["bin/connect.js", ...args])
  // Generous: a loaded 2-core machine takes ~25 s to start the CLI.
  const { code } = await cli.exited(150_000)
  return { code, stdout: cli.stdout(), stderr: cli.stderr() }
}

// The four invocations at once: each is a whole CLI start.
let root: Run, bare: Run, hub: Run, leaf: Run, refused: Run
beforeAll(async () => {
  ;[root, bare, hub, leaf, refused] = await Promise.all([
    connect(["--help"]),
    connect([]),
    connect(["hub", "--help"]),
    connect(["hub", "apikey", "create", "--help"]),
    connect(["hub", "agent", "revoke", "--reason", "lost"])
  ])
}, 180_000)

afterAll(() => killTracked())

/** Every command that does something, as `connect` + its words (groups such as `hub apikey` only lead to theirs). */
const COMMANDS = [
  "hub", "hub verify-log", "hub workspace create", "hub apikey create", "hub apikey list", "hub apikey revoke",
  "hub agent revoke", "hub agent allow", "hub agent list", "hub service release",
  "audit", "audit verify", "audit pubkey", "audit rotate-key", "audit export", "audit access",
  "up", "expose", "unexpose", "reach", "unreach", "status", "services", "daemon install"
]

const commandLines = (text: string) => text.split("\n").filter((l) => /^ {2}connect \S/.test(l))

describe("connect --help", () => {
  it("lists each command once, one line with a description, and fits on one screen", () => {
    const help = root
    expect(help.code).toBe(0)
    const lines = help.stdout.trimEnd().split("\n")
    expect(lines.length).toBeLessThanOrEqual(40)
    for (const line of lines) expect(line.length).toBeLessThanOrEqual(120)
    const listed = commandLines(help.stdout).map((l) => /^ {2}connect (.+?)\s{2,}\S/.exec(l)?.[1]?.trim())
    for (const name of COMMANDS) expect(listed.filter((l) => l === name), name).toHaveLength(1)
    // No option list of the hub (or any command) in front of its subcommands.
    expect(help.stdout).not.toMatch(/--port|\[--[a-z-]+ (integer|text|file)\]/)
    expect(help.stdout).toContain("connect HOST:PORT")
  })

  it("bare `connect` prints the same help", () => {
    expect(bare.code).toBe(0)
    expect(bare.stdout).toBe(root.stdout)
  })

  it("`connect hub --help` shows the hub's options once, then its subcommands one line each", () => {
    const help = hub
    expect(help.code).toBe(0)
    expect(help.stdout.match(/--port integer/g)?.length).toBe(2) // the usage line and the option's entry
    const listed = commandLines(help.stdout)
    expect(listed.length).toBe(COMMANDS.filter((c) => c.startsWith("hub ")).length)
    for (const line of listed) expect(line).not.toContain("[--")
  })

  it("a subcommand's usage names its own options, not its parent's", () => {
    const help = leaf
    expect(help.code).toBe(0)
    expect(help.stdout).toMatch(/^Usage: connect hub apikey create --workspace text/)
    expect(help.stdout).not.toContain("--port")
  })

  it("a command line the parser refuses shows that command's usage, not the hub server's options", () => {
    expect(refused.code).toBe(2)
    expect(refused.stderr).toContain("Missing argument <ID>")
    expect(refused.stderr).toMatch(/Usage: connect hub agent revoke .*<ID>/)
    expect(refused.stderr).toContain("Run 'connect hub agent revoke --help'")
    expect(refused.stderr).not.toContain("--port")
  })
})
