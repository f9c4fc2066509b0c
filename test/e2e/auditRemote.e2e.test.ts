/**
 * `connect audit --hub URL` as an investigator runs it: the real `connect` binary against a real hub (its first start
 * on a fresh database): a workspace key reads its own workspace's events only (naming another is refused), an operator
 * key prints exactly what the local listing prints, each remote query is itself on the log, and every failure is one
 * line.
 */
import * as Net from "node:net"
import { describe, expect, it } from "vitest"
import * as AgentWorld from "../support/AgentWorld.ts"

const world = AgentWorld.make("audit-remote")

/** A free loopback port with nothing listening on it. */
const closedPort = () =>
  new Promise<number>((resolve) => {
    const server = Net.createServer().listen(0, "127.0.0.1", () => {
      const port = (server.address() as Net.AddressInfo).port
      server.close(() => resolve(port))
    })
  })

const lines = (stdout: string) => stdout.trim().split("\n").filter((l) => l !== "").map((l) => JSON.parse(l))

describe("connect audit --hub", () => {
  it("reads through the hub what the key may see, prints it as the local listing does, and says why it cannot", async () => {
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
    const provision = async (key: string) => {
      const response = await fetch(`${url}/v1/agents`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({ label: "shared" })
      })
      return (await response.json()) as { agentId: string; token: string }
    }
    const agentA = await provision(a.key)
    const agentB = await provision(b.key)
    expect((await fetch(`${url}/v1/agents`, { headers: { authorization: `Bearer pc_${"n".repeat(40)}` } })).status).toBe(401)

    // Workspace B, its key from the environment: its own events, whatever it names.
    const mine = await world.command(home, ["audit", "--hub", url, "--jsonl", "--limit", "200"], { CONNECT_API_KEY: b.key })
    expect(mine.code).toBe(0)
    const records = lines(mine.stdout)
    expect(records.length).toBeGreaterThan(2)
    expect(records.filter((r) => r.workspace !== b.id)).toEqual([])
    expect(records.map((r) => r.data.agentId)).toContain(agentB.agentId)
    const [named, other] = await Promise.all([
      world.command(home, ["audit", "--hub", url, "--agent", agentA.agentId, "--jsonl"], { CONNECT_API_KEY: b.key }),
      world.command(home, ["audit", "--hub", url, "--workspace", a.id, "--jsonl"], { CONNECT_API_KEY: b.key })
    ])
    expect(named).toMatchObject({ code: 0, stdout: "" })
    expect(other).toMatchObject({ code: 1, stdout: "" })
    expect(other.stderr).toBe(`connect audit: the hub refused the request (403: this API key reads its own workspace (${b.id}) only)\n`)

    // The operator (the first start's key, as --api-key): the same records and table as the local listing.
    for (const format of [["--jsonl"], []]) {
      const args = ["audit", "--type", "admin,agent,auth", "--limit", "50", ...format]
      const local = await world.command(home, args, db)
      const remote = await world.command(home, [...args, "--hub", url, "--api-key", operator])
      expect(local.code).toBe(0)
      expect(remote).toEqual(local)
    }

    // Each query through the API is on the log: one AuditRead per query, with the filters as given.
    const reads = lines((await world.command(home, ["audit", "--type", "AuditRead", "--jsonl", "--reveal-ips"], db)).stdout)
    const byB = reads.filter((r) => r.data.apiKeyId !== undefined && r.workspace === b.id)
    expect(byB.map((r) => r.data.filters)).toEqual([{ agent: agentA.agentId, limit: "50" }, { limit: "200" }])
    expect(byB[0]!.meta).toMatchObject({ actor: { kind: "apikey" }, sourceIp: "127.0.0.1" })

    // One line for each failure: a refused key, an agent token, no hub, a bad filter (exit 2, nothing sent).
    const nothing = `http://127.0.0.1:${await closedPort()}`
    const [badKey, token, down, badFilter] = await Promise.all([
      world.command(home, ["audit", "--hub", url], { CONNECT_API_KEY: `pc_${"x".repeat(40)}` }),
      world.command(home, ["audit", "--hub", url, "--api-key", agentA.token]),
      world.command(home, ["audit", "--hub", nothing], { CONNECT_API_KEY: b.key }),
      world.command(home, ["audit", "--hub", url, "--since", "yesterday"], { CONNECT_API_KEY: b.key })
    ])
    expect(badKey).toMatchObject({ code: 1, stdout: "" })
    expect(badKey.stderr).toBe("connect audit: the hub refused the API key (401: unknown API key); check --api-key or CONNECT_API_KEY\n")
    // An agent token where a key belongs is told apart before anything is sent (core/ApiKeyOption.ts).
    expect(token.code).toBe(2)
    expect(token.stderr).toContain("that is not an API key")
    expect(token.stderr).not.toContain(agentA.token)
    expect(down.code).toBe(1)
    expect(down.stderr).toBe(`connect audit: cannot reach the hub at ${nothing}: ECONNREFUSED\n`)
    expect(badFilter.code).toBe(2)
    expect(badFilter.stderr).toContain(`connect audit: --since: "yesterday" is not a time`)
  }, 600_000)
})
