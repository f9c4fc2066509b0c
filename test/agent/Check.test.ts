/**
 * The exposing agent's probe against real servers on 127.0.0.1: a plain TCP service is never refused (not TLS,
 * not HTTP, still ok), an HTTP server reports its status line, a closed port fails the check.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Https from "node:https"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import * as Check from "../../agent/Check.ts"

const closers: Array<() => void> = []
afterEach(() => {
  for (const close of closers.splice(0)) close()
})

const listen = (server: Net.Server): Promise<number> =>
  new Promise((resolve) => {
    closers.push(() => {
      server.close()
      if ("closeAllConnections" in server) (server as Http.Server).closeAllConnections()
    })
    server.listen(0, "127.0.0.1", () => resolve((server.address() as Net.AddressInfo).port))
  })

const fast = { tcpTimeout: "2 seconds", tlsTimeout: "1 second", httpTimeout: "1 second" } as const

describe("Check.probe", () => {
  it("reports a plain TCP service that speaks first as TCP OK, not TLS, not HTTP, and ok", async () => {
    const sockets: Array<Net.Socket> = []
    const received: Array<string> = []
    const server = Net.createServer((socket) => {
      sockets.push(socket)
      socket.on("error", () => {})
      socket.on("data", (chunk) => received.push(chunk.toString("latin1")))
      socket.write("220 banner, not HTTP\r\n")
    })
    closers.push(() => sockets.forEach((s) => s.destroy()))
    const port = await listen(server)
    const report = await Check.probe("localhost", port, fast)
    expect(report.dns.ok).toBe(true)
    expect(report.dns.detail).toMatch(/^localhost → /)
    expect(report.tcp.ok).toBe(true)
    expect(report.tls).toMatchObject({ ok: false, detail: "not TLS (plain TCP service)" })
    expect(report.http).toMatchObject({ ok: false, detail: "not HTTP" })
    expect(report.ok).toBe(true)
    const text = Check.format({ ...report, service: "plain", latencyMs: 1.5 })
    expect(text).toContain("✓ DNS OK")
    expect(text).toContain("✓ TCP OK")
    expect(text).toContain("– TLS: not TLS (plain TCP service)")
    expect(text).toContain("– HTTP: not HTTP")
    expect(text).toContain("✓ Latency: 1.5 ms")
  })

  it("reports a silent TCP service (never answers) as ok, not TLS, not HTTP, within the timeouts", async () => {
    const sockets: Array<Net.Socket> = []
    const server = Net.createServer((socket) => {
      sockets.push(socket)
      socket.on("error", () => {})
    })
    closers.push(() => sockets.forEach((s) => s.destroy()))
    const port = await listen(server)
    const started = Date.now()
    const report = await Check.probe("127.0.0.1", port, fast)
    expect(Date.now() - started).toBeLessThan(4_000)
    expect(report.tcp.ok).toBe(true)
    expect(report.tls.ok).toBe(false)
    expect(report.http).toMatchObject({ ok: false, detail: "not HTTP" })
    expect(report.ok).toBe(true)
  })

  it("reports an HTTP server's status line", async () => {
    const server = Http.createServer((_req, res) => {
      res.writeHead(200)
      res.end("hello")
    })
    const port = await listen(server)
    const report = await Check.probe("127.0.0.1", port, fast)
    expect(report.tcp.ok).toBe(true)
    expect(report.tls.ok).toBe(false)
    expect(report.http).toMatchObject({ ok: true, detail: "HTTP/1.1 200 OK" })
    expect(report.ok).toBe(true)
  })

  it("reports TLS and the HTTP status line over TLS for an HTTPS server with a self-signed certificate", async () => {
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-check-"))
    closers.push(() => Fs.rmSync(dir, { recursive: true, force: true }))
    ChildProcess.execFileSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
      "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
      "-keyout", Path.join(dir, "key.pem"), "-out", Path.join(dir, "cert.pem")
    ], { stdio: "ignore" })
    const server = Https.createServer(
      { key: Fs.readFileSync(Path.join(dir, "key.pem")), cert: Fs.readFileSync(Path.join(dir, "cert.pem")) },
      (_req, res) => {
        res.writeHead(204)
        res.end()
      }
    )
    const port = await listen(server)
    const report = await Check.probe("localhost", port, fast)
    expect(report.tcp.ok).toBe(true)
    expect(report.tls.ok).toBe(true)
    // Reported, not refused: the certificate is nobody's CA's, and the probe says so.
    expect(report.tls.detail).toMatch(/^TLSv1\.[23], certificate not verified: DEPTH_ZERO_SELF_SIGNED_CERT$/)
    expect(report.http).toMatchObject({ ok: true, detail: "HTTP/1.1 204 No Content" })
    expect(report.ok).toBe(true)
  })

  it("fails on a closed port: TCP failed, TLS and HTTP skipped, not ok", async () => {
    const server = Net.createServer()
    const port = await listen(server)
    closers.pop()
    await new Promise<void>((resolve) => server.close(() => resolve()))
    const report = await Check.probe("127.0.0.1", port, fast)
    expect(report.dns.ok).toBe(true)
    expect(report.tcp.ok).toBe(false)
    expect(report.tcp.detail).toContain("ECONNREFUSED")
    expect(report.tls.detail).toBe("skipped")
    expect(report.http.detail).toBe("skipped")
    expect(report.ok).toBe(false)
    expect(Check.format({ ...report, service: "gone", latencyMs: 0 })).toContain("✗ TCP failed")
  })
})
