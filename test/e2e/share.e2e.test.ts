/**
 * Shares across workspaces as users run them, all real processes on 127.0.0.1: a hub on a fresh database, workspace
 * "owner" with agent A exposing three services in front of a TCP echo server, workspace "guest" with agent B. The
 * owner shares one service (`connect share create`), B joins (`connect join`) and reaches exactly that one; the other
 * services stay invisible (not_shared); a revocation closes the tunnel open through the share (TunnelClosed
 * share_revoked) and refuses every later use; a short share expires, a rate-limited one refuses past its limit; wrong
 * and hostile codes are clear errors, coalesced on the log. Each side reads its part through `connect audit --hub`.
 */
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import * as Control from "../../agent/Control.ts"
import * as State from "../../agent/State.ts"
import * as AgentWorld from "../support/AgentWorld.ts"
import { waitUntil } from "../support/processes.ts"
import { queryOnce } from "../support/TestDatabase.ts"

const world = AgentWorld.make("share")

/** Sends `data` through 127.0.0.1:`port` and half-closes: what came back, or null when the tunnel was refused. */
const roundTrip = (port: number, data: string, timeoutMs = 15_000) =>
  new Promise<string | null>((resolve) => {
    const socket = Net.connect({ port, host: "127.0.0.1", allowHalfOpen: true })
    let got = ""
    const timer = setTimeout(() => {
      socket.destroy()
      resolve(null)
    }, timeoutMs)
    socket.on("data", (chunk: Buffer) => (got += chunk.toString()))
    socket.once("end", () => {
      clearTimeout(timer)
      socket.end()
      resolve(got === "" ? null : got)
    })
    socket.once("error", () => {
      clearTimeout(timer)
      resolve(null)
    })
    socket.end(data)
  })

const lines = (stdout: string) => stdout.trim().split("\n").filter((l) => l !== "").map((l) => JSON.parse(l))

const started = Date.now()
const step = (what: string) => console.log(`[share e2e] ${what} at ${Math.round((Date.now() - started) / 1000)} s`)

describe("connect share / connect join (real hub, real agents)", () => {
  it("grants exactly what was shared, until revoked, expired or over its limit; every use on both sides' log", async () => {
    const { dir } = world
    // The machine is shared and loaded: a process gets 3 minutes, not the world's one.
    const command = async (home: string, args: ReadonlyArray<string>, extra: NodeJS.ProcessEnv = {}) => {
      const cli = world.connect(home, args, extra)
      const exit = await cli.exited(180_000)
      return { code: exit.code, stdout: cli.stdout(), stderr: cli.stderr() }
    }
    const hubHome = dir("hub")
    // Refusals coalesced per 2 s instead of 10 s: the wrong codes' last window is written 8 s sooner.
    const { url } = await world.firstHub(hubHome, ["--denial-window", "2s"])
    const db = { DATABASE_URL: world.databaseUrl() }
    const workspace = async (name: string) => {
      const created = await command(hubHome, ["hub", "workspace", "create", name], db)
      expect(created.code).toBe(0)
      return {
        id: /created workspace "\w+" ([0-9a-f-]{36})/.exec(created.stdout)![1]!,
        key: AgentWorld.API_KEY.exec(created.stdout)![1]!
      }
    }
    // Commands that do not depend on each other run side by side: each process's start is most of its time.
    const owner = await workspace("owner")
    const guest = await workspace("guest")
    step("workspaces")
    const homeA = dir("agent-a")
    const homeB = dir("agent-b")
    // In the foreground (stopped with the test's processes): `--detach` gives up after 30 s on a loaded machine.
    await Promise.all([[homeA, owner.key, "owner-box"], [homeB, guest.key, "guest-box"]].map(([home, key, label]) =>
      world.connect(home!, ["up", "--hub", url, "--api-key", key!, "--label", label!]).waitFor(/connected to \S+ as/, 180_000)
    ))
    step("agents up")
    // The agents' control sockets, as `connect expose` and `connect reach` use them (a process each costs a minute
    // on this shared machine; the CLI's own paths are exercised by the commands run below).
    const control = (home: string, req: Control.Request) =>
      Effect.runPromise(Control.request(State.paths(home).socket, req, "120 seconds"))
    for (const name of ["db", "secret", "limited", "brief"]) {
      await control(homeA, { op: "expose", name, host: "127.0.0.1", port: world.echoPort() })
    }
    const api = async (secret: string, method: string, path: string, body?: unknown) => {
      const response = await fetch(`${url}${path}`, {
        method,
        headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
        ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) })
      })
      return { status: response.status, body: (await response.json()) as any }
    }
    const asOwner = { CONNECT_API_KEY: owner.key }
    step("exposed")

    // The owner shares db with the CLI: the code once on stdout, never in the listing. Two more through the API:
    // brief (expires in 30 s) and limited (3 uses a minute).
    const [created, limited] = await Promise.all([
      command(homeA, ["share", "create", "--service", "db", "--name", "acme-contractor"], asOwner),
      api(owner.key, "POST", "/v1/shares", { services: ["limited"], rateLimit: "3/min" })
    ])
    expect(created.code, created.stderr).toBe(0)
    const code = /^(sh_[0-9A-Za-z]{32})$/m.exec(created.stdout)![1]!
    const shareId = /share ([0-9a-f-]{36}) \(acme-contractor\) of db, until /.exec(created.stdout)![1]!
    expect(limited.status).toBe(201)
    const limitedCode: string = limited.body.code
    const limitedId: string = limited.body.share.shareId
    const listed = await api(owner.key, "GET", "/v1/shares")
    expect(JSON.stringify(listed.body)).not.toContain(code)
    expect(listed.body.shares).toContainEqual(
      expect.objectContaining({ shareId, name: "acme-contractor", services: ["db"], status: "active", joined: 0 })
    )
    step("shares created")

    // Before joining, B reaches nothing of the owner's.
    await expect(control(homeB, { op: "reach", name: "db", port: 0 })).rejects.toThrow(/not found/i)

    const token = (JSON.parse(Fs.readFileSync(Path.join(homeB, "agent.json"), "utf8")) as { token: string }).token
    // Created and joined at once: it expires in 20 s.
    const brief = await api(owner.key, "POST", "/v1/shares", { services: ["brief"], expires: "20s" })
    const briefUntil = Date.now() + 20_000
    expect(brief.status).toBe(201)
    const briefCode: string = brief.body.code
    expect((await api(token, "POST", "/v1/shares/join", { code: briefCode })).status).toBe(200)
    // A tunnel opened through it before it expires is ended when it expires (it carried traffic on a minute later).
    const briefReach = (await control(homeB, { op: "reach", name: "brief", port: 0 })) as { port: number }
    const briefHeld = Net.connect({ port: briefReach.port, host: "127.0.0.1" })
    world.sockets.push(briefHeld)
    let briefEchoed = ""
    briefHeld.on("data", (c: Buffer) => (briefEchoed += c.toString()))
    briefHeld.on("error", () => {})
    const briefEnded = new Promise<void>((resolve) => briefHeld.once("close", () => resolve()))
    briefHeld.write("brief ping")
    await expect.poll(() => briefEchoed, { timeout: 15_000 }).toBe("brief ping")
    const [joined, ...others] = await Promise.all([
      command(homeB, ["join", code]),
      api(token, "POST", "/v1/shares/join", { code: limitedCode })
    ])
    expect(joined.code, joined.stderr).toBe(0)
    expect(joined.stdout).toMatch(new RegExp(`^joined share ${shareId} of workspace owner: db until `))
    for (const other of others) expect(other.status).toBe(200)
    step("joined")
    const [table, services, reached, secret, reachedLimited] = await Promise.all([
      command(homeB, ["services"]),
      api(token, "GET", "/v1/services"),
      control(homeB, { op: "reach", name: "db", port: 0 }) as Promise<{ port: number }>,
      command(homeB, ["reach", "secret", "--port", "0"]),
      control(homeB, { op: "reach", name: "limited", port: 0 }) as Promise<{ port: number }>
    ])
    expect(services.body.services).toContainEqual(
      expect.objectContaining({ name: "db", online: true, shared: { shareId, workspaceId: owner.id, workspaceName: "owner" } })
    )
    const names = services.body.services.map((s: { name: string }) => s.name)
    expect(names).toEqual(expect.arrayContaining(["db", "limited"]))
    expect(names).not.toContain("secret")
    expect(table.stdout).toMatch(/db\s+online\s+shared by owner/)

    // B reaches db through the share, and only what was shared.
    const port = reached.port
    expect(await roundTrip(port, "hello through a share")).toBe("hello through a share")
    expect(secret.code).toBe(1)
    expect(secret.stderr).toMatch(/not found/i)
    step("reached")

    // A tunnel open through the share is closed at revoke; nothing passes after it.
    const held = Net.connect({ port, host: "127.0.0.1" })
    world.sockets.push(held)
    let echoed = ""
    held.on("data", (c: Buffer) => (echoed += c.toString()))
    held.on("error", () => {})
    const ended = new Promise<void>((resolve) => held.once("close", () => resolve()))
    held.write("ping")
    await expect.poll(() => echoed, { timeout: 15_000 }).toBe("ping")
    const revoked = await command(homeA, ["share", "revoke", shareId], asOwner)
    expect(revoked.code, revoked.stderr).toBe(0)
    expect(revoked.stdout).toMatch(/revoked: its tunnels are closed/)
    await Promise.race([ended, new Promise((_, reject) => setTimeout(() => reject(new Error("tunnel not closed at revoke")), 10_000))])
    expect(await roundTrip(port, "after revoke")).toBeNull()
    const [servicesAfter, rejoin] = await Promise.all([api(token, "GET", "/v1/services"), api(token, "POST", "/v1/shares/join", { code })])
    expect(servicesAfter.body.services.map((s: { name: string }) => s.name)).not.toContain("db")
    expect(rejoin.status).toBe(401)
    expect(rejoin.body.error.message).toMatch(/this share is revoked; ask its owner for a new code/)

    step("revoked")
    // The rate limit and expiry.
    const limitedPort = reachedLimited.port
    // Three uses a minute: the reach was one of them if its minute has not ended yet (on this loaded machine it may
    // have); either way the fourth tunnel is refused and the ones let through come first.
    const results = []
    for (let i = 0; i < 4; i++) results.push(await roundTrip(limitedPort, `n${i}`))
    expect(results.slice(0, 2)).toEqual(["n0", "n1"])
    expect(results[3]).toBeNull()
    expect([["n0", "n1", null, null], ["n0", "n1", "n2", null]]).toContainEqual(results)
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, briefUntil + 500 - Date.now())))
    await Promise.race([briefEnded, new Promise((_, reject) => setTimeout(() => reject(new Error("tunnel not closed at expiry")), 15_000))])
    await expect(control(homeB, { op: "reach", name: "brief", port: 0 })).rejects.toThrow(/expired/)

    // Wrong and hostile codes: clear answers, at most two events per window.
    const join = (body: string) =>
      fetch(`${url}/v1/shares/join`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body
      })
    const huge = await join(JSON.stringify({ code: "x".repeat(1024 * 1024) }))
    expect(huge.status).toBe(413)
    for (const bad of ["sh_" + "0".repeat(32), "a\u0000b", "\ud800", ""]) {
      const answer = await join(JSON.stringify({ code: bad }))
      expect(answer.status).toBe(404)
      expect(((await answer.json()) as { error: { message: string } }).error.message).toMatch(/no share has this code/)
    }
    const many = await Promise.all(Array.from({ length: 200 }, (_, i) => join(JSON.stringify({ code: `sh_${String(i).padStart(32, "x")}` }))))
    expect(many.map((r) => r.status).every((s) => s === 404)).toBe(true)
    const wrong = await api(token, "POST", "/v1/shares/join", { code: "sh_not-a-code" })
    expect(wrong.status).toBe(404)
    // The window of refusals ends (--denial-window 2s) and is written as one event with its count: read straight from
    // the database until all 205 are there (at most 20 s), so that the reads below record nothing while it waits.
    const unknownCodes = async () =>
      Number((await queryOnce<{ n: string }>(world.databaseUrl(), `select coalesce(sum(coalesce((data->>'count')::int, 1)), 0) as n
        from events where type = 'ShareAccessed' and data->>'reason' = 'unknown_code'`))[0]!.n)
    expect(await waitUntil(async () => (await unknownCodes()) >= 205, 20_000, 250)).toBe(true)

    step("hostile codes")
    // The owner's side: every use, allowed and denied, with the share named on the tunnels.
    // One read per key (each a process), filtered here.
    // Through the API `connect audit --hub` reads (GET /v1/audit/events), each key under its row-level security.
    const read = async (key: string) => {
      const r = await api(key, "GET", "/v1/audit/events?limit=1000")
      expect(r.status).toBe(200)
      return (r.body.events as Array<any>).map((e) => ({ ...e, workspace: e.workspaceId }))
    }
    const [ownerLog, guestLog, all, access] = await Promise.all([
      read(owner.key),
      read(guest.key),
      command(hubHome, ["audit", "--jsonl", "--limit", "5000"], db),
      command(hubHome, ["audit", "access", "--service", "limited", "--workspace", owner.id, "--at", "0s"], db)
    ])
    const audit = async (key: string, type: string) => (key === owner.key ? ownerLog : guestLog).filter((r) => r.type === type)
    const ownerAccess = await audit(owner.key, "ShareAccessed")
    const reasons = (records: ReadonlyArray<{ data: { outcome: string; reason?: string } }>) =>
      new Set(records.map((r) => r.data.reason ?? r.data.outcome))
    expect(reasons(ownerAccess)).toEqual(new Set(["allowed", "not_shared", "revoked", "rate_limited", "expired"]))
    // A not_shared refusal may be kept from the joiner (it would tell which names the owner has): the owner's alone.
    expect(ownerAccess.filter((r) =>
      !(r.workspace === owner.id && (r.data.byWorkspaceId === guest.id || r.data.reason === "not_shared"))
    )).toEqual([])
    const ownerTunnels = await audit(owner.key, "TunnelClosed")
    expect(ownerTunnels.filter((r) => r.data.viaShareId === shareId).map((r) => r.data.reason)).toContain("share_revoked")
    expect(ownerTunnels.filter((r) => r.data.viaShareId === brief.body.share.shareId).map((r) => r.data.reason))
      .toContain("share_expired")
    const opened = await audit(owner.key, "TunnelOpened")
    expect(opened.filter((r) => r.data.viaShareId === shareId).length).toBeGreaterThanOrEqual(2)
    expect((await audit(owner.key, "ShareJoined")).map((r) => r.data.agentId).length).toBe(3)

    // The joiner's side: the same events of its uses, and its wrong codes in its own workspace, coalesced.
    const guestAccess = await audit(guest.key, "ShareAccessed")
    const guestReasons = reasons(guestAccess)
    guestReasons.delete("not_shared")
    expect(guestReasons).toEqual(new Set(["allowed", "revoked", "rate_limited", "expired", "unknown_code"]))
    const unknown = guestAccess.filter((r) => r.data.reason === "unknown_code")
    expect(unknown.every((r) => r.workspace === guest.id)).toBe(true)
    // One event per 10 s window (two when a window has more than its first): 205 refusals are a handful of events
    // however long this loaded machine took to send them.
    expect(unknown.length).toBeLessThan(20)
    expect(unknown.reduce((n, r) => n + (r.data.count ?? 1), 0)).toBe(205)
    expect((await audit(guest.key, "TunnelClosed")).some((r) => r.data.reason === "share_revoked")).toBe(true)
    expect((await audit(guest.key, "ShareJoined")).length).toBe(3)
    // Not the owner's own events: its share's creation, its services.
    expect(await audit(guest.key, "ShareCreated")).toEqual([])
    expect(await audit(guest.key, "ServiceExposed")).toEqual([])

    // No code anywhere in the log.
    for (const c of [code, briefCode, limitedCode]) expect(all.stdout).not.toContain(c)

    // connect audit access lists the live shares of a service.
    expect(access.code, access.stderr).toBe(0)
    expect(access.stdout).toMatch(new RegExp(`Shares valid then[^]*${limitedId}`))
  }, 600_000)
})
