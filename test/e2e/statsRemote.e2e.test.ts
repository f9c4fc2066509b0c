/**
 * `connect audit --stats --hub URL` as an investigator runs it: the real `connect` binary against a real hub (its first
 * start on a fresh database, following the log into the rollups): the operator's key prints exactly what the local
 * `--stats` prints (--json and the tables), a workspace key exactly the local answer for its workspace and nothing of
 * another's, each answer is an AuditRead on the log, and a bad option or a refusal is one line.
 */
import { describe, expect, it } from "vitest"
import * as AgentWorld from "../support/AgentWorld.ts"

const world = AgentWorld.make("stats-remote")

const lines = (stdout: string) => stdout.trim().split("\n").filter((l) => l !== "").map((l) => JSON.parse(l))

describe("connect audit --stats --hub", () => {
  it("prints the hub's rollups as the local command does, within what the key may see, each answer recorded", async () => {
    const home = world.dir("hub")
    const db = { DATABASE_URL: world.databaseUrl() }
    const { apiKey: operator, url } = await world.firstHub(home)
    const workspace = async (name: string) => {
      const created = await world.command(home, ["hub", "workspace", "create", name], db)
      expect(created.code).toBe(0)
      return {
        id: /created workspace "\w+" ([0-9a-f-]{36})/.exec(created.stdout)![1]!,
        key: AgentWorld.API_KEY.exec(created.stdout)![1]!
      }
    }
    const [a, b] = [await workspace("a"), await workspace("b")]
    const provision = async (key: string, label: string) => {
      const response = await fetch(`${url}/v1/agents`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({ label })
      })
      expect(response.status).toBe(201)
    }
    await provision(a.key, "alpha-secret")
    await provision(b.key, "bravo")
    expect((await fetch(`${url}/v1/agents`, { headers: { authorization: `Bearer pc_${"n".repeat(40)}` } })).status).toBe(401)

    // The local command first (it catches the rollups up to the head), then the hub's answer as of that same position.
    for (const args of [["--json"], [], ["--by", "agent"], ["--by", "ip", "--reveal-ips", "--since", "2h"]]) {
      const local = await world.command(home, ["audit", "--stats", ...args], db)
      const remote = await world.command(home, ["audit", "--stats", ...args, "--hub", url, "--api-key", operator])
      expect(local.code, local.stderr).toBe(0)
      expect(remote, args.join(" ")).toEqual(local)
    }
    const all = JSON.parse((await world.command(home, ["audit", "--stats", "--json", "--hub", url, "--api-key", operator])).stdout)
    expect(all.agents.map((r: { label: string }) => r.label).sort()).toEqual(["alpha-secret", "bravo"])

    // Workspace B, its key from the environment: exactly the local answer for B, nothing of A's.
    for (const args of [["--json"], ["--by", "agent"]]) {
      const local = await world.command(home, ["audit", "--stats", "--workspace", b.id, ...args], db)
      const mine = await world.command(home, ["audit", "--stats", ...args, "--hub", url], { CONNECT_API_KEY: b.key })
      expect(mine, args.join(" ")).toEqual(local)
      expect(mine.stdout).toContain("bravo")
      expect(mine.stdout).not.toContain("alpha")
      expect(mine.stdout).not.toContain(a.id)
    }
    const other = await world.command(home, ["audit", "--stats", "--workspace", a.id, "--hub", url], { CONNECT_API_KEY: b.key })
    expect(other).toMatchObject({ code: 1, stdout: "" })
    expect(other.stderr).toBe(`connect audit: the hub refused the request (403: this API key reads its own workspace (${b.id}) only)\n`)

    // Checked before anything is sent (exit 2), or refused by the hub (exit 1): one line each.
    const [badBy, badSince, filter, noKey] = await Promise.all([
      world.command(home, ["audit", "--stats", "--by", "bogus", "--hub", url], { CONNECT_API_KEY: b.key }),
      world.command(home, ["audit", "--stats", "--since", "yesterday", "--hub", url], { CONNECT_API_KEY: b.key }),
      world.command(home, ["audit", "--stats", "--type", "auth", "--hub", url], { CONNECT_API_KEY: b.key }),
      world.command(home, ["audit", "--stats", "--hub", url])
    ])
    expect([badBy.code, badBy.stderr]).toEqual([2, "connect audit: --by: must be one of type, agent, service, ip, day, hour\n"])
    expect(badSince.code).toBe(2)
    expect(badSince.stderr).toContain(`connect audit: --since: "yesterday" is not a time`)
    expect([filter.code, filter.stderr]).toEqual([2, "connect audit: --type does not go with --stats\n"])
    expect([noKey.code, noKey.stderr]).toEqual([2, "connect audit: --hub needs an API key: set CONNECT_API_KEY (or --api-key)\n"])

    // Each answer is on the log: B's two in B's workspace with the options as given, the operator's hub-level.
    const reads = lines((await world.command(home, ["audit", "--type", "AuditRead", "--jsonl", "--limit", "100"], db)).stdout)
      .filter((r) => r.data.kind === "stats")
    expect(reads.filter((r) => r.workspace === b.id).map((r) => r.data.filters).reverse()).toEqual([
      { limit: "50" },
      { by: "agent", limit: "50" }
    ])
    expect(reads.filter((r) => r.workspace === null)).toHaveLength(5)
    expect(reads).toHaveLength(7)
  }, 600_000)
})
