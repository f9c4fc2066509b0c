/**
 * `connect reach NAME --check`: the probe the exposing agent runs against its own target — DNS, TCP, then an
 * informational TLS and HTTP attempt — and the text it is shown as. TLS and HTTP never fail a check: a plain TCP
 * service (Postgres, Redis, ...) is "not TLS" and "not HTTP", and the check is ok as soon as DNS and TCP succeed.
 */
import * as Dns from "node:dns"
import * as Net from "node:net"
import * as Tls from "node:tls"
import { Duration } from "effect"
import type { CheckReport } from "../core/Protocol.ts"

/** Timeouts of the probe steps. */
export interface ProbeOptions {
  /** TCP connect (default 5 s). */
  readonly tcpTimeout?: Duration.DurationInput
  /** TLS handshake (default 2 s). */
  readonly tlsTimeout?: Duration.DurationInput
  /** Wait for an HTTP status line (default 2 s). */
  readonly httpTimeout?: Duration.DurationInput
}

type Step = CheckReport["dns"]

const since = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e6
const round = (ms: number) => Math.round(ms * 10) / 10
const skipped: Step = { ok: false, ms: 0, detail: "skipped" }

const lookup = (host: string): Promise<{ address: string } | { error: string }> =>
  new Promise((resolve) =>
    Dns.lookup(host, (error, address) => resolve(error ? { error: error.code ?? error.message } : { address })))

const tcp = (host: string, port: number, timeoutMs: number): Promise<string | undefined> =>
  new Promise((resolve) => {
    const socket = Net.connect({ host, port })
    const done = (error: string | undefined) => {
      clearTimeout(timer)
      socket.removeAllListeners("connect")
      socket.on("error", () => {})
      socket.destroy()
      resolve(error)
    }
    const timer = setTimeout(() => done(`no answer within ${timeoutMs / 1000} s`), timeoutMs)
    socket.once("connect", () => done(undefined))
    socket.once("error", (error: NodeJS.ErrnoException) => done(error.code ?? error.message))
  })

/**
 * The TLS handshake with the target: its protocol and whether its certificate verifies against the system's CAs for
 * the name checked. Not verifying is reported, not refused: the probe sends nothing secret (a `HEAD /` at most), and a
 * service behind a private CA or a self-signed certificate is still a working TLS service to the exposer.
 */
const tls = (address: string, port: number, servername: string | undefined, timeoutMs: number): Promise<string | undefined> =>
  new Promise((resolve) => {
    const socket = Tls.connect({
      host: address,
      port,
      rejectUnauthorized: false,
      ...(servername === undefined ? {} : { servername })
    })
    const verified = () => {
      if (socket.authorized) return "certificate verified"
      const why = socket.authorizationError as unknown as { code?: string } | string | null
      const code = typeof why === "string" ? why : why?.code
      return `certificate not verified${code ? `: ${code}` : ""}`
    }
    const done = (protocol: string | undefined) => {
      clearTimeout(timer)
      socket.removeAllListeners("secureConnect")
      socket.on("error", () => {})
      socket.destroy()
      resolve(protocol)
    }
    const timer = setTimeout(() => done(undefined), timeoutMs)
    socket.once("secureConnect", () => done(`${socket.getProtocol() ?? "TLS"}, ${verified()}`))
    socket.once("error", () => done(undefined))
    socket.once("close", () => done(undefined))
  })

/** Sends `HEAD /` and resolves the status line when the reply starts with `HTTP/`, else `undefined`. */
const http = (
  address: string,
  port: number,
  hostHeader: string,
  secure: boolean,
  servername: string | undefined,
  timeoutMs: number
): Promise<string | undefined> =>
  new Promise((resolve) => {
    const socket: Net.Socket = secure
      ? Tls.connect({ host: address, port, rejectUnauthorized: false, ...(servername === undefined ? {} : { servername }) })
      : Net.connect({ host: address, port })
    let received = Buffer.alloc(0)
    let finished = false
    const done = (line: string | undefined) => {
      if (finished) return
      finished = true
      clearTimeout(timer)
      socket.removeAllListeners("data")
      socket.on("error", () => {})
      socket.destroy()
      resolve(line)
    }
    const timer = setTimeout(() => done(undefined), timeoutMs)
    socket.once(secure ? "secureConnect" : "connect", () =>
      socket.write(`HEAD / HTTP/1.1\r\nHost: ${hostHeader}\r\nConnection: close\r\n\r\n`))
    socket.on("data", (chunk: Buffer) => {
      received = Buffer.concat([received, chunk])
      const text = received.toString("latin1")
      // Anything but a prefix of "HTTP/" (a banner, an echo of our request) is not HTTP.
      if (!"HTTP/".startsWith(text.slice(0, 5))) return done(undefined)
      const end = text.indexOf("\r\n")
      if (end >= 0) return done(text.slice(0, end))
      if (received.length > 1024) return done(text.slice(0, 100))
    })
    socket.once("error", () => done(undefined))
    socket.once("close", () => done(undefined))
  })

/** Probes `host:port`: DNS, TCP, then (only if TCP answered) TLS and HTTP. Never rejects. */
export const probe = async (host: string, port: number, options: ProbeOptions = {}): Promise<CheckReport> => {
  const started = process.hrtime.bigint()
  const finish = (steps: Pick<CheckReport, "dns" | "tcp" | "tls" | "http">): CheckReport => ({
    host,
    port,
    ...steps,
    ok: steps.dns.ok && steps.tcp.ok,
    elapsedMs: round(since(started))
  })

  let start = process.hrtime.bigint()
  const resolved = await lookup(host)
  if ("error" in resolved) {
    return finish({ dns: { ok: false, ms: round(since(start)), detail: `${host}: ${resolved.error}` }, tcp: skipped, tls: skipped, http: skipped })
  }
  const address = resolved.address
  const dns: Step = { ok: true, ms: round(since(start)), detail: `${host} → ${address}` }
  const endpoint = Net.isIPv6(address) ? `[${address}]:${port}` : `${address}:${port}`

  start = process.hrtime.bigint()
  const tcpError = await tcp(address, port, Duration.toMillis(options.tcpTimeout ?? "5 seconds"))
  const tcpStep: Step = { ok: tcpError === undefined, ms: round(since(start)), detail: tcpError === undefined ? endpoint : `${endpoint}: ${tcpError}` }
  if (tcpError !== undefined) return finish({ dns, tcp: tcpStep, tls: skipped, http: skipped })

  const servername = Net.isIP(host) === 0 ? host : undefined
  start = process.hrtime.bigint()
  const tlsProtocol = await tls(address, port, servername, Duration.toMillis(options.tlsTimeout ?? "2 seconds"))
  const tlsStep: Step = tlsProtocol === undefined
    ? { ok: false, ms: round(since(start)), detail: "not TLS (plain TCP service)" }
    : { ok: true, ms: round(since(start)), detail: tlsProtocol }

  start = process.hrtime.bigint()
  const hostHeader = Net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`
  const status = await http(address, port, hostHeader, tlsProtocol !== undefined, servername, Duration.toMillis(options.httpTimeout ?? "2 seconds"))
  const httpStep: Step = status === undefined
    ? { ok: false, ms: round(since(start)), detail: "not HTTP" }
    : { ok: true, ms: round(since(start)), detail: status }

  return finish({ dns, tcp: tcpStep, tls: tlsStep, http: httpStep })
}

/** What `connect reach NAME --check` prints: the report and the round trip through the hub. */
export interface CheckOutput extends CheckReport {
  readonly service: string
  /** Round trip of the check through the hub, minus the probe's own time, in ms. */
  readonly latencyMs: number
}

/** The report as lines for a terminal. */
export const format = (output: CheckOutput): string => {
  const { dns, tcp: t, tls: s, http: h } = output
  const mark = (step: Step, required: boolean) => (step.ok ? "✓" : required ? "✗" : "–")
  const lines = [
    dns.ok ? `✓ DNS OK (${dns.detail}, ${dns.ms} ms)` : `✗ DNS failed (${dns.detail})`,
    t.ok ? `✓ TCP OK (${t.detail}, ${t.ms} ms)` : t.detail === "skipped" ? "– TCP: skipped" : `✗ TCP failed (${t.detail}, ${t.ms} ms)`,
    s.ok ? `✓ TLS OK (${s.detail}, ${s.ms} ms)` : `${mark(s, false)} TLS: ${s.detail}`,
    h.ok ? `✓ HTTP: ${h.detail} (${h.ms} ms)` : `${mark(h, false)} HTTP: ${h.detail}`,
    `✓ Latency: ${output.latencyMs} ms (round trip through the hub)`
  ]
  return lines.join("\n")
}

/** The report for a service the probed agent does not expose (any more). */
export const notExposed = (service: string): CheckReport => ({
  host: "",
  port: 0,
  dns: { ok: false, ms: 0, detail: `${service} is not exposed by this agent` },
  tcp: skipped,
  tls: skipped,
  http: skipped,
  ok: false,
  elapsedMs: 0
})
