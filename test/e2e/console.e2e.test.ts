/**
 * The web console in a real browser: Debian's chromium (installed by test/support/install-chromium.sh when missing),
 * driven by playwright-core, against a real hub (its first start on a fresh database) with a real agent and tunnel.
 * Signs in with a workspace key and an operator key, filters the log, sees a tunnel opened during the test arrive in
 * the live tail (a long poll: one read on the log for the tail), renders a hostile agent label and a hostile requested
 * service name as text (no dialog, no script error, no CSP violation), keeps a workspace key to its workspace and its
 * addresses masked (in the UI and by editing a request), shows events per hour, the last verify run, agents with last
 * seen and transport — every workspace's for the operator — signs out and sees a session expire. Every step is on the
 * log. Every wait is for a condition, none a fixed sleep. Screenshots of each page go to docs/console/ with
 * CONNECT_UPDATE_SCREENSHOTS=1, else to a temporary directory.
 */
import { execFileSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { chromium, type Browser, type Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest"
import WebSocket from "ws"
import * as AgentWorld from "../support/AgentWorld.ts"
import { repoRoot, track } from "../support/processes.ts"

const world = AgentWorld.make("console")
// The README's screenshots (docs/console/) are rewritten only when asked (CONNECT_UPDATE_SCREENSHOTS=1): a test run
// must leave the tracked files as they were (.ci/run's clone stayed dirty with nine new PNGs). Otherwise they go to a
// temporary directory, still taken, so a page that cannot render fails the test either way.
const shots = process.env.CONNECT_UPDATE_SCREENSHOTS === "1"
  ? Path.join(repoRoot, "docs", "console")
  : Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-console-shots-"))
const LABEL = "<img src=x onerror=alert(1)>"
const NAME = "\"><script>alert(2)</script>"

let browser: Browser | undefined
/** The first test's hub home and operator key, which the second test's hub reuses. */
let shared: { home: string; operator: string } | undefined

beforeAll(() => {
  execFileSync("sh", [Path.join(repoRoot, "test", "support", "install-chromium.sh")], { stdio: "inherit", timeout: 600_000 })
}, 600_000)

afterAll(async () => {
  await browser?.close()
  if (process.env.CONNECT_UPDATE_SCREENSHOTS !== "1") Fs.rmSync(shots, { recursive: true, force: true })
})

/** What a page did that it must not: dialogs, uncaught errors, CSP violations and other console errors. */
const watch = (page: Page) => {
  const bad: Array<string> = []
  page.on("dialog", (d) => {
    bad.push(`dialog: ${d.message()}`)
    void d.dismiss()
  })
  page.on("pageerror", (e) => bad.push(`pageerror: ${e.message}`))
  page.on("console", (m) => {
    // A refused request (401 before sign-in, the 403 the test provokes) is logged by the browser itself; anything
    // else at error level — a CSP violation, a script error — is a failure.
    if (m.type() === "error" && !/Failed to load resource: the server responded with a status of 40[13]/.test(m.text())) {
      bad.push(`console: ${m.text()}`)
    }
  })
  return bad
}

const shot = (page: Page, name: string) => page.screenshot({ path: Path.join(shots, `${name}.png`), fullPage: true })

const signIn = async (page: Page, url: string, key: string) => {
  await page.goto(`${url}/ui`)
  await page.fill("#api-key", key)
  await page.click("#sign-in")
  await page.waitForSelector("#sign-out", { timeout: 15_000 })
}

/** Events of the log as the operator reads them through the API. */
const eventsOf = async (url: string, operator: string, params: Record<string, string>) => {
  const response = await fetch(`${url}/v1/audit/events?${new URLSearchParams({ limit: "200", ...params })}`, {
    headers: { authorization: `Bearer ${operator}` }
  })
  expect(response.status).toBe(200)
  return ((await response.json()) as { events: Array<{ type: string; workspaceId: string | null; data: any }> }).events
}

/** Speaks the relay's JSON transport as an agent and asks for a service by `name` (refused: nothing has it). */
const reachByName = (port: number, token: string, name: string) =>
  new Promise<void>((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/agent`, ["connect.ws.v1"], { perMessageDeflate: false })
    const timer = setTimeout(() => {
      ws.terminate()
      reject(new Error("no answer to Reach within 15 s"))
    }, 15_000)
    ws.on("open", () => ws.send(JSON.stringify({ _tag: "Hello", protocol: 1, revision: 1, token, transport: "ws", agentVersion: "test" })))
    ws.on("message", (raw) => {
      const message = JSON.parse(String(raw)) as { _tag: string }
      if (message._tag === "Welcome") ws.send(JSON.stringify({ _tag: "Reach", request: 1, name }))
      else if (message._tag !== "Ping") {
        clearTimeout(timer)
        ws.close()
        resolve()
      }
    })
    ws.on("error", (e) => {
      clearTimeout(timer)
      reject(e)
    })
  })

const roundTrip = (port: number) =>
  new Promise<string>((resolve, reject) => {
    const socket = Net.connect(port, "127.0.0.1", () => socket.end("hello through the tunnel"))
    const chunks: Array<Buffer> = []
    socket.on("data", (c) => chunks.push(c))
    socket.on("end", () => resolve(Buffer.concat(chunks).toString()))
    socket.on("error", reject)
    socket.setTimeout(15_000, () => socket.destroy(new Error("tunnel timed out")))
  })

describe("web console (headless chromium)", () => {
  it("signs in, shows the record, tails it live, renders hostile text as text, keeps workspaces apart, ends sessions", async () => {
    Fs.mkdirSync(shots, { recursive: true })
    const home = world.dir("hub")
    const db = { DATABASE_URL: world.databaseUrl() }
    const first = await world.firstHub(home)
    const { apiKey: operator, url, port } = first
    shared = { home, operator }
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
      return (await response.json()) as { agentId: string; token: string }
    }
    const hostile = await provision(a.key, LABEL)
    await provision(b.key, "b-private-agent")
    await reachByName(port, hostile.token, NAME)

    browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"], timeout: 60_000 })
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
    const page = await context.newPage()
    const bad = watch(page)

    // Sign-in: a wrong key is refused (and recorded); the workspace key opens a session.
    await page.goto(`${url}/ui`)
    expect((await page.request.get(`${url}/ui`)).headers()["content-security-policy"]).toContain("script-src 'self'")
    await page.fill("#api-key", `pc_${"x".repeat(40)}`)
    await page.click("#sign-in")
    await expect.poll(() => page.textContent("[role=alert]"), { timeout: 10_000 }).toContain("unknown API key")
    await shot(page, "signin")
    await page.fill("#api-key", a.key)
    await page.click("#sign-in")
    await page.waitForSelector("#sign-out", { timeout: 15_000 })
    const cookie = (await context.cookies()).find((c) => c.name === "connect_console")!
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: "Strict" })

    // Overview: events per hour over 7 days; verify and checkpoints are hub-level, the operator's.
    await page.waitForSelector("#agents-online", { timeout: 20_000 })
    expect(await page.textContent("#agents-online")).toBe("0 / 1")
    expect(await page.locator("#chart-week rect").count()).toBeGreaterThanOrEqual(7 * 24)
    expect(await page.textContent("#last-verify")).toContain("hub-level")
    await shot(page, "overview")

    // Agents: the hostile label is text; no image element was made of it.
    await page.click("#nav-agents")
    await page.waitForSelector("td.label", { timeout: 20_000 })
    expect(await page.textContent("td.label")).toBe(LABEL)
    expect(await page.locator("img").count()).toBe(0)
    expect(await page.textContent("#agents thead")).toMatch(/status.*last seen.*last address.*transport.*token expires/)
    await shot(page, "agents")

    // Audit log, filtered to the refused reach: the hostile name is text in the expanded raw event.
    await page.click("#nav-log")
    await page.waitForSelector("#events", { timeout: 20_000 })
    await page.fill("#filter-type", "ReachDenied")
    await page.click("#apply")
    // The unfiltered rows are on the page until the filtered read replaces them (and none while it is under way):
    // wait for the filtered table itself, not for any row.
    await vi.waitFor(async () => {
      expect(await page.locator("tr.event").count()).toBe(1)
      expect(await page.textContent("tr.event")).toContain("ReachDenied")
    }, { timeout: 20_000, interval: 100 })
    await page.click("tr.event")
    expect(await page.textContent("tr.raw pre")).toContain(JSON.stringify(NAME).slice(1, -1))
    expect(await page.locator("script").count()).toBe(1) // the console's own module script only
    expect(await page.textContent("#command")).toBe(`connect audit --since 24h --type ReachDenied --workspace ${a.id}`)
    await shot(page, "log")

    // Live tail: a tunnel opened now appears on top without a reload.
    await page.fill("#filter-type", "tunnel")
    await page.click("#apply")
    await page.waitForSelector("#events", { timeout: 20_000 })
    await page.check("#live")
    const agentHome = world.dir("agent")
    const up = await world.command(agentHome, ["up", "--hub", url, "--api-key", a.key, "--label", "tunnel-agent", "--detach"])
    expect(up.code).toBe(0)
    const pid = Number(Fs.readFileSync(Path.join(agentHome, "agent.pid"), "utf8"))
    world.detachedPids.push(pid)
    track(pid)
    expect((await world.command(agentHome, ["expose", `127.0.0.1:${world.echoPort()}`, "--name", "echo"])).code).toBe(0)
    const reached = await world.command(agentHome, ["reach", "echo", "--port", "0"])
    expect(reached.code).toBe(0)
    const reachPort = Number(/^echo → 127\.0\.0\.1:(\d+)$/m.exec(reached.stdout)![1])
    expect(await roundTrip(reachPort)).toBe("hello through the tunnel")
    await page.waitForSelector("tr.event.fresh >> text=TunnelOpened", { timeout: 30_000 })
    await shot(page, "live-tail")
    // The tail is one read on the log, however many answers it took (it polled every 2 s and read each time before).
    const tails = (await eventsOf(url, operator, { type: "AuditRead", since: "1h", limit: "1000" }))
      .filter((e) => e.data.kind === "tail" && e.workspaceId === a.id)
    // Its record names the filters and the position it opened at (after=: what it could read back to).
    expect(tails.map((e) => e.data.filters)).toEqual([{ type: "tunnel", workspace: a.id, after: expect.stringMatching(/^\d+$/) }])
    await page.uncheck("#live")

    // Stats and access at a time.
    await page.click("#nav-stats")
    await page.waitForSelector("#table-types", { timeout: 20_000 })
    expect(await page.textContent("#table-types")).toContain("TunnelOpened")
    await shot(page, "stats")
    await page.click("#nav-access")
    await page.fill("#access-service", "echo")
    await page.click("#access-go")
    await page.waitForSelector("#access-answer", { timeout: 20_000 })
    expect(await page.textContent("#access-answer")).toContain("Who could reach echo at")
    await shot(page, "access")

    // Workspace isolation: nothing of B on any page, and an edited request naming B is refused.
    const mine = (await page.evaluate(async () => (await (await fetch("/v1/audit/events?limit=1000&since=1d")).json()))) as {
      events: Array<{ workspaceId: string }>
    }
    expect(mine.events.length).toBeGreaterThan(3)
    expect(mine.events.filter((e: { workspaceId: string }) => e.workspaceId !== a.id)).toEqual([])
    const edited = await page.evaluate(async (id) => (await fetch(`/v1/audit/events?workspace=${id}`)).status, b.id)
    expect(edited).toBe(403)
    // Addresses are masked by the hub for this key: asking for them in full by editing a request changes nothing.
    const asked = await page.evaluate(async () =>
      Promise.all(["/v1/audit/events?limit=1000&since=1d", "/v1/audit/stats?by=ip&reveal=true", "/v1/agents"].map(async (p) => (await fetch(p)).text()))
    )
    // Client addresses only: a service's target (127.0.0.1:PORT of ServiceExposed) is not one.
    const addresses = (JSON.parse(asked[0]!) as { events: Array<{ data: any; meta: any }> }).events
      .flatMap((e) => [e.meta?.sourceIp, e.data?.ip, e.data?.previousIp, e.data?.newIp]).filter((ip) => ip !== undefined)
    expect(addresses.length).toBeGreaterThan(3)
    expect(addresses.filter((ip) => ip !== "127.0.0.x")).toEqual([])
    expect(JSON.parse(asked[1]!).addresses.map((r: { address: string }) => r.address).filter((ip: string) => ip !== "127.0.0.x")).toEqual([])
    expect(JSON.parse(asked[2]!).agents.map((r: { lastIp: string | null }) => r.lastIp).filter((ip: string | null) => ip !== null && ip !== "127.0.0.x")).toEqual([])
    const editedStats = await page.evaluate(async (id) => (await fetch(`/v1/audit/stats?workspace=${id}`)).status, b.id)
    expect(editedStats).toBe(403)
    expect(await page.textContent("body")).not.toContain("b-private-agent")
    // The cookie reads, it does not act: provisioning with it alone is refused.
    const post = await page.evaluate(async () => (await fetch("/v1/agents", { method: "POST", headers: { "content-type": "application/json" }, body: "{}" })).status)
    expect(post).toBe(401)

    // The operator: the last verify run on the Overview, a workspace picker, every workspace's agents.
    expect((await world.command(home, ["audit", "verify"], db)).code).toBe(0)
    const opContext = await browser.newContext({ viewport: { width: 1280, height: 900 } })
    const opPage = await opContext.newPage()
    const opBad = watch(opPage)
    await signIn(opPage, url, operator)
    await opPage.waitForSelector("#last-verify", { timeout: 20_000 })
    expect(await opPage.textContent("#last-verify")).toMatch(/last verify: intact: \d+ events/)
    await shot(opPage, "operator-overview")
    await expect.poll(() => opPage.locator("#workspace option").count(), { timeout: 20_000 }).toBeGreaterThanOrEqual(4)
    await opPage.click("#nav-agents")
    await expect.poll(async () => (await opPage.locator("td.label").allTextContents()).sort(), { timeout: 20_000 })
      .toEqual([LABEL, "b-private-agent", "tunnel-agent"].sort())
    const tunnelAgent = opPage.locator("tr.agent", { hasText: "tunnel-agent" })
    expect(await tunnelAgent.locator("td.last-seen").textContent()).toBe("now")
    expect(await tunnelAgent.locator("td.transport").textContent()).toMatch(/^(msgpack|ws)$/)
    await shot(opPage, "operator-agents")
    await opPage.click("#nav-log")
    await opPage.waitForSelector("tr.event", { timeout: 20_000 })
    await shot(opPage, "operator-log")
    await opContext.close()

    // Sign-out: the cookie is gone and the old one reads nothing.
    await page.click("#sign-out")
    await page.waitForSelector("#sign-in", { timeout: 15_000 })
    const stale = await fetch(`${url}/v1/audit/events`, { headers: { cookie: `connect_console=${cookie.value}` } })
    expect(stale.status).toBe(401)

    const auth = await eventsOf(url, operator, { type: "ConsoleSignedIn,ConsoleSignedOut,ConsoleSignInFailed", since: "1h" })
    const types = auth.map((e) => e.type)
    expect(types).toContain("ConsoleSignInFailed")
    expect(auth.filter((e) => e.type === "ConsoleSignedIn").map((e) => e.data.scope).sort()).toEqual(["operator", "workspace"])
    expect(auth.find((e) => e.type === "ConsoleSignedOut")).toMatchObject({ workspaceId: a.id, data: { reason: "signed_out" } })
    expect(JSON.stringify(auth)).not.toContain(cookie.value)

    expect(bad).toEqual([])
    expect(opBad).toEqual([])
    await context.close()
    // The next test restarts the hub with short sessions: this one stops first (its sessions die with it).
    first.hub.child.kill("SIGKILL")
    await first.hub.exited(30_000)
  }, 300_000)

  it("ends a session when it expires, and on the log", async () => {
    const { home, operator } = shared!
    const hub = world.connect(home, ["hub", "--port", "0"], { DATABASE_URL: world.databaseUrl(), CONNECT_CONSOLE_SESSION_SECONDS: "2" })
    const url = (await hub.waitFor(AgentWorld.LISTENING, 90_000))[1]!
    const context = await browser!.newContext()
    const page = await context.newPage()
    const bad = watch(page)
    await signIn(page, url, operator)
    // The hub ends the session itself when it expires (its sweep): wait for that on the log, not for a fixed time.
    await expect.poll(async () => (await eventsOf(url, operator, { type: "ConsoleSignedOut", since: "1h" })).map((e) => e.data.reason), {
      timeout: 30_000,
      interval: 250
    }).toContain("expired")
    await page.evaluate(() => {
      ;(globalThis as unknown as { location: { hash: string } }).location.hash = "#/log"
    })
    await page.waitForSelector("#sign-in", { timeout: 15_000 })
    expect(await page.textContent("[role=alert]")).toContain("Your session has ended")
    const ended = await eventsOf(url, operator, { type: "ConsoleSignedOut", since: "1h" })
    expect(ended.map((e) => e.data.reason), hub.stdout().slice(-4000) + hub.stderr().slice(-2000)).toContain("expired")
    expect(ended.filter((e) => e.data.reason === "expired").length).toBe(1)
    expect(bad).toEqual([])
    await context.close()
  }, 180_000)
})
