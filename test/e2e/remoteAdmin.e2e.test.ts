/**
 * Remote administration as an operator does it from another machine: the real `connect` binary with only the hub's
 * URL and the first start's (operator) key — no --data-dir, no DATABASE_URL — creates a workspace, issues and revokes
 * its keys, lists and revokes its agents; a revoked key is refused at once and a revoked agent's live connection ends.
 * A workspace key reaching beyond its workspace is told so in one line.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { describe, expect, it } from "vitest"
import * as AgentWorld from "../support/AgentWorld.ts"

const world = AgentWorld.make("remote-admin")

/** A CLI run to its end: generous, as a loaded 2-core machine takes 20–60 s to start one. */
const command = async (home: string, args: ReadonlyArray<string>, extra: NodeJS.ProcessEnv = {}) => {
  const cli = world.connect(home, args, extra)
  const exit = await cli.exited(240_000)
  return { code: exit.code, stdout: cli.stdout(), stderr: cli.stderr() }
}

describe("connect hub workspace|apikey|agent --hub URL --api-key KEY", () => {
  it("an operator with the bootstrap key and the hub's URL manages a workspace, its keys and agents", async () => {
    const { apiKey: operator, url } = await world.firstHub(world.dir("hub"))
    // Another machine: its own CONNECT_HOME, no database in sight.
    const laptop = world.dir("laptop")
    const remote = (args: ReadonlyArray<string>, key = operator) =>
      command(laptop, ["hub", ...args, "--hub", url, "--api-key", key])

    const created = await remote(["workspace", "create", "acme"])
    expect(created.stderr).toBe("")
    expect(created.code).toBe(0)
    const workspaceId = /created workspace "acme" ([0-9a-f-]{36})/.exec(created.stdout)![1]!
    const adminKey = AgentWorld.API_KEY.exec(created.stdout)![1]!

    const issued = await remote(["apikey", "create", "--workspace", workspaceId, "--name", "ci"])
    expect(issued.code).toBe(0)
    expect(issued.stdout).toContain("created workspace API key")
    const ciKey = AgentWorld.API_KEY.exec(issued.stdout)![1]!

    // The key from the environment works as well as --api-key.
    const listed = await command(laptop, ["hub", "apikey", "list", "--workspace", workspaceId, "--json", "--hub", url], {
      CONNECT_API_KEY: operator
    })
    expect(listed.code).toBe(0)
    const keys = JSON.parse(listed.stdout) as Array<{ apiKeyId: string; name: string; revokedAt: string | null }>
    expect(keys.map((k) => [k.name, k.revokedAt])).toEqual([["admin", null], ["ci", null]])
    expect(listed.stdout).not.toContain(ciKey)

    // An agent of the workspace connects; the operator lists it.
    const agentHome = world.dir("db-host")
    const agent = world.connect(agentHome, ["up", "--hub", url, "--api-key", adminKey, "--label", "db-host"])
    const agentId = (await agent.waitFor(/connected to \S+ as ([0-9a-f-]{36})/, 240_000))[1]!
    // msgpack unless asked otherwise, stored for its next starts.
    expect(JSON.parse(Fs.readFileSync(Path.join(agentHome, "agent.json"), "utf8")).transport).toBe("msgpack")
    const agents = await remote(["agent", "list", "--workspace", workspaceId])
    expect(agents.code).toBe(0)
    expect(agents.stdout).toMatch(new RegExp(`^${agentId}\\s+${workspaceId}\\s+db-host\\s+online\\s`, "m"))

    // The ci key is revoked: its next request is refused, with what to do.
    const revokedKey = await remote(["apikey", "revoke", keys[1]!.apiKeyId])
    expect(revokedKey).toMatchObject({ code: 0, stdout: `revoked API key ${keys[1]!.apiKeyId}\n` })
    const refusedKey = await remote(["apikey", "list", "--workspace", workspaceId], ciKey)
    expect(refusedKey.code).toBe(1)
    expect(refusedKey.stderr).toBe(
      "connect: the hub refused the API key (401: API key revoked); check --api-key or CONNECT_API_KEY\n"
    )

    // The agent is revoked: its live connection ends at once and it stops, saying why.
    const revokedAgent = await remote(["agent", "revoke", agentId, "--reason", "laptop lost"])
    expect(revokedAgent).toMatchObject({ code: 0, stdout: expect.stringContaining(`revoked agent ${agentId}`) })
    await agent.waitFor(/disconnected from the hub \(4001 token revoked\)/, 30_000)
    expect((await agent.exited(60_000)).code).toBe(1)
    expect(agent.stderr()).toContain("the hub refused this agent's token (TokenRevoked")
    const after = await remote(["agent", "list", "--workspace", workspaceId, "--json"])
    expect(JSON.parse(after.stdout)).toEqual([expect.objectContaining({ agentId, online: false, revokedAt: "revoked" })])

    // The workspace's own key manages its workspace, not the hub's.
    const beyond = await remote(["workspace", "create", "other"], adminKey)
    expect(beyond.code).toBe(1)
    expect(beyond.stderr).toBe(
      "connect: the hub refused the request (403: creating a workspace needs an operator key); use a key of that " +
        "workspace, or an operator key\n"
    )
    // Nothing sent without a key, or over plain HTTP to another machine: exit 2.
    const noKey = await command(laptop, ["hub", "apikey", "list", "--workspace", workspaceId, "--hub", url])
    expect(noKey).toMatchObject({ code: 2, stderr: "connect: --hub needs an API key: set CONNECT_API_KEY (or pass --api-key pc_…)\n" })
  }, 900_000)
})
