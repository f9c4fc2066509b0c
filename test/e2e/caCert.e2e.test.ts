/**
 * A hub whose certificate comes from a private CA (made by `openssl` here), as an operator meets it with the real
 * binary: `connect up` without `--ca-cert` is refused with a line saying to pass it, with another CA's certificate
 * refused too, with a garbage file exit 2; with the CA it provisions, stays connected (stored: later commands and the
 * detached agent use its copy, kept when the file given moves; `connect status` names it by subject and fingerprint),
 * refuses a FIFO as the CA file at once, and relays bytes to a second agent that trusts the CA through CONNECT_CA_CERT; the remote
 * admin commands (`connect hub … --hub`), `connect share list --hub` and `connect audit --hub` verify the hub the same way.
 */
import * as ChildProcess from "node:child_process"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { describe, expect, it } from "vitest"
import * as AgentWorld from "../support/AgentWorld.ts"
import * as PrivateCa from "../support/PrivateCa.ts"
import { track } from "../support/processes.ts"

const world = AgentWorld.make("ca-cert")

/** A CLI run to its end, bounded generously: a loaded 2-core machine takes 20–60 s to start one. */
const command = async (home: string, args: ReadonlyArray<string>, extra: NodeJS.ProcessEnv = {}) => {
  const cli = world.connect(home, args, extra)
  const exit = await cli.exited(180_000)
  return { code: exit.code, stdout: cli.stdout(), stderr: cli.stderr() }
}

const roundTrip = (port: number, data: Buffer) =>
  new Promise<Buffer>((resolve, reject) => {
    const socket = Net.connect({ host: "127.0.0.1", port })
    world.sockets.push(socket)
    const chunks: Array<Buffer> = []
    let received = 0
    socket.on("data", (chunk: Buffer) => {
      chunks.push(chunk)
      received += chunk.length
      if (received >= data.length) {
        socket.end()
        resolve(Buffer.concat(chunks))
      }
    })
    socket.on("error", reject)
    socket.setTimeout(60_000, () => socket.destroy(new Error("no echo within 60 s")))
    socket.write(data)
  })

const detached = (home: string) => {
  const pid = Number(Fs.readFileSync(Path.join(home, "agent.pid"), "utf8"))
  world.detachedPids.push(pid)
  track(pid)
  return pid
}

describe("connect up --ca-cert for a hub with a private CA's certificate", () => {
  it("refuses the hub without the CA, trusts it with the CA, and relays", async () => {
    const hubHome = world.dir("hub")
    const ca = PrivateCa.make(world.dir("pki"))
    const hub = world.connect(hubHome, ["hub", "--port", "0", "--tls-cert", ca.serverCert, "--tls-key", ca.serverKey], {
      DATABASE_URL: world.databaseUrl()
    })
    const url = (await hub.waitFor(/connect hub listening on (https:\/\/127\.0\.0\.1:\d+)/, 120_000))[1]!
    const key = (await hub.waitFor(AgentWorld.API_KEY, 10_000))[1]!
    const a = world.dir("agent-a")

    // Without the CA: refused, and told what to pass; nothing stored.
    const bare = await command(a, ["up", "--hub", url, "--api-key", key])
    expect(bare.code).toBe(1)
    expect(bare.stderr.trim()).toBe(
      `connect: cannot reach the hub at ${url}: the hub's TLS certificate is not signed by a CA this machine trusts ` +
        "(UNABLE_TO_VERIFY_LEAF_SIGNATURE); if it comes from a private CA, pass --ca-cert FILE (or set CONNECT_CA_CERT) " +
        "with that CA's certificate"
    )
    expect(Fs.existsSync(Path.join(a, "agent.json"))).toBe(false)
    // Another CA's certificate does not make the hub trusted.
    const other = await command(a, ["up", "--hub", url, "--api-key", key, "--ca-cert", ca.otherCaCert])
    expect(other.code).toBe(1)
    expect(other.stderr).toContain(`not signed by the CA of ${ca.otherCaCert} (UNABLE_TO_VERIFY_LEAF_SIGNATURE)`)
    // A file that is not a certificate: bad usage, one line, before anything is sent.
    const garbage = Path.join(hubHome, "garbage.pem")
    Fs.writeFileSync(garbage, "not a certificate\n")
    const bad = await command(a, ["up", "--hub", url, "--api-key", key, "--ca-cert", garbage])
    expect(bad.code).toBe(2)
    expect(bad.stderr.trim()).toBe(
      `connect: --ca-cert ${garbage}: holds no PEM certificate (expected -----BEGIN CERTIFICATE-----, the CA's certificate in PEM)`
    )

    // A FIFO given as the CA file (a read of it would wait for a writer forever): refused, one line, exit 2.
    const fifo = Path.join(hubHome, "ca.fifo")
    ChildProcess.execFileSync("mkfifo", [fifo])
    const piped = await command(a, ["up", "--hub", url, "--api-key", key, "--ca-cert", fifo])
    expect(piped.code).toBe(2)
    expect(piped.stderr.trim()).toBe(`connect: --ca-cert ${fifo}: is a FIFO, not a file; give the file that holds the CA's certificate`)

    // With the CA: provisioned, connected in the background; the CA is stored for later starts.
    const up = await command(a, ["up", "--hub", url, "--api-key", key, "--label", "a", "--ca-cert", ca.caCert, "--detach"])
    expect(up.stderr).toBe("")
    expect(up.code).toBe(0)
    expect(up.stdout).toContain(`connected to ${url}`)
    detached(a)
    // Stored as the agent's own copy (0600), not as the path given: the file given may move.
    const copy = Path.join(a, "hub-ca.pem")
    expect((JSON.parse(Fs.readFileSync(Path.join(a, "agent.json"), "utf8")) as { caCert?: string }).caCert).toBe(copy)
    expect(Fs.statSync(copy).mode & 0o777).toBe(0o600)
    expect(Fs.readFileSync(copy, "utf8").trim()).toBe(Fs.readFileSync(ca.caCert, "utf8").trim())
    expect((await command(a, ["expose", `127.0.0.1:${world.echoPort()}`, "--name", "echo"])).code).toBe(0)
    // A later command that asks the hub uses the stored CA, with the file given moved away.
    const moved = `${ca.caCert}.moved`
    Fs.renameSync(ca.caCert, moved)
    const services = await command(a, ["services"])
    Fs.renameSync(moved, ca.caCert)
    expect(services.stderr).toBe("")
    expect(services.stdout).toMatch(/echo\s+online/)
    // Status names the CA by subject and SHA-256 fingerprint, never more of it.
    const cert = new Crypto.X509Certificate(Fs.readFileSync(ca.caCert))
    const status = await command(a, ["status"])
    expect(status.stdout).toContain(`ca:         ${copy}\n  ${cert.subject.split("\n").join(", ")} (SHA-256 ${cert.fingerprint256})`)
    expect(status.stdout).not.toContain("BEGIN CERTIFICATE")
    const json = JSON.parse((await command(a, ["status", "--json"])).stdout)
    expect(json.caCert).toEqual({ file: copy, certificates: [{ subject: cert.subject.split("\n").join(", "), sha256: cert.fingerprint256 }] })

    // B trusts the CA through the environment (a relative path, as a user types it), and reaches A's service.
    const b = world.dir("agent-b")
    const relative = Path.relative(process.cwd(), ca.caCert)
    // B is provisioned with a 15-minute token lifetime (--ttl), which the hub gives it.
    const beforeB = Date.now()
    const upB = await command(b, ["up", "--hub", url, "--api-key", key, "--label", "b", "--ttl", "15m", "--detach"], { CONNECT_CA_CERT: relative })
    expect(upB.stderr).toBe("")
    expect(upB.code).toBe(0)
    const validUntil = Date.parse(/valid until (\S+)\)/.exec(upB.stdout)![1]!)
    expect(validUntil).toBeGreaterThanOrEqual(beforeB + 15 * 60_000 - 1000)
    expect(validUntil).toBeLessThanOrEqual(Date.now() + 15 * 60_000)
    detached(b)
    const reached = await command(b, ["reach", "echo", "--port", "0"])
    const port = Number(/echo → 127\.0\.0\.1:(\d+)/.exec(reached.stdout)![1])
    const data = Crypto.randomBytes(256 * 1024)
    expect((await roundTrip(port, data)).equals(data)).toBe(true)

    // Remote administration verifies the hub too.
    const laptop = world.dir("laptop")
    const refused = await command(laptop, ["hub", "workspace", "create", "acme", "--hub", url, "--api-key", key])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toContain("pass --ca-cert FILE (or set CONNECT_CA_CERT)")
    const created = await command(laptop, ["hub", "workspace", "create", "acme", "--hub", url, "--api-key", key, "--ca-cert", ca.caCert])
    expect(created.stderr).toBe("")
    expect(created.stdout).toContain('created workspace "acme"')
    const shares = await command(laptop, ["share", "list", "--hub", url, "--api-key", key, "--ca-cert", ca.caCert])
    expect(shares.stderr).toBe("")
    expect(shares.code).toBe(0)
    // And reading the log through the hub.
    const unread = await command(laptop, ["audit", "--hub", url, "--api-key", key, "--limit", "1"])
    expect(unread.code).toBe(1)
    expect(unread.stderr).toContain("pass --ca-cert FILE (or set CONNECT_CA_CERT)")
    const read = await command(laptop, ["audit", "--hub", url, "--api-key", key, "--limit", "1", "--json"], { CONNECT_CA_CERT: ca.caCert })
    expect(read.stderr).toBe("")
    expect(read.code).toBe(0)
    expect(JSON.parse(read.stdout)).toHaveLength(1)

    hub.child.kill("SIGTERM")
    await hub.exited(30_000)
  }, 1_200_000)
})
