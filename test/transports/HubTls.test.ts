/**
 * Trusting a private CA for the hub (transports/HubTls.ts), against real TLS servers on 127.0.0.1 with certificates
 * made by `openssl`: the CA file checked (unreadable, garbage, a key, too large: one line each), HTTP calls and the
 * WebSocket dial verify the hub with the system's CAs plus the given one, another CA's certificate is refused, and a
 * refusal says what to pass.
 */
import * as ChildProcess from "node:child_process"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Https from "node:https"
import type * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import * as HttpClient from "@effect/platform/HttpClient"
import { Effect, Either } from "effect"
import { WebSocketServer } from "ws"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as HubTls from "../../transports/HubTls.ts"
import * as Msgpack from "../../transports/Msgpack.ts"
import * as PrivateCa from "../support/PrivateCa.ts"

let dir: string
let ca: PrivateCa.PrivateCa
let server: Https.Server
let wss: WebSocketServer
let base: string

beforeAll(async () => {
  dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-hubtls-"))
  ca = PrivateCa.make(dir)
  server = Https.createServer(
    { cert: Fs.readFileSync(ca.serverCert), key: Fs.readFileSync(ca.serverKey) },
    (_req, res) => res.writeHead(200, { "content-type": "text/plain" }).end("ok")
  )
  wss = new WebSocketServer({ server, handleProtocols: (protocols) => [...protocols][0] ?? false })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  base = `127.0.0.1:${(server.address() as Net.AddressInfo).port}`
}, 60_000)

afterAll(async () => {
  for (const client of wss.clients) client.terminate()
  wss.close()
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  Fs.rmSync(dir, { recursive: true, force: true })
})

const read = (file: string) => Effect.runSync(Effect.either(HubTls.readCaCert(file)))
const message = (file: string) => {
  const result = read(file)
  return Either.isLeft(result) ? result.left.message : "accepted"
}
const write = (name: string, text: string | Buffer) => {
  const file = Path.join(dir, name)
  Fs.writeFileSync(file, text)
  return file
}

/** GET / through the HTTP client layer of `trust`: the body, or the failure as `describe` words it. */
const get = (trust: HubTls.TrustShape) =>
  Effect.runPromise(
    HttpClient.get(`https://${base}/`).pipe(
      Effect.flatMap((response) => response.text),
      Effect.timeout("10 seconds"),
      Effect.catchAll((error) =>
        Effect.succeed(`failed: ${HubTls.describe((error as { cause?: unknown }).cause ?? error, trust)}`)
      ),
      Effect.provide(HubTls.httpClientLayer(trust))
    )
  )

/** Dials `wss://` with the msgpack transport and the CAs of `trust`; "open" or the failure's cause as described. */
const dial = (trust: HubTls.TrustShape) =>
  Effect.runPromise(
    Effect.scoped(Msgpack.transport.dial(`wss://${base}/v1/agent`, HubTls.caOption(trust))).pipe(
      Effect.either,
      Effect.map((result) => (Either.isRight(result) ? "open" : `failed: ${HubTls.describe(result.left.cause, trust)}`))
    )
  )

const trusting = (file: string) => Effect.runSync(HubTls.readCaCert(file))

describe("HubTls", () => {
  it("reads a CA certificate, and says in one line what is wrong with a file that is not one", () => {
    const ok = read(ca.caCert)
    expect(Either.isRight(ok) && ok.right.ca?.file).toBe(ca.caCert)
    expect(message(Path.join(dir, "missing.pem"))).toBe(`--ca-cert ${Path.join(dir, "missing.pem")}: cannot read it (ENOENT)`)
    expect(message(dir)).toContain("is a directory, not a file")
    expect(message(write("garbage.pem", "hello\u0000\ud800 world\n"))).toContain("holds no PEM certificate (expected -----BEGIN CERTIFICATE-----")
    expect(message(write("empty.pem", ""))).toContain("holds no PEM certificate")
    expect(message(ca.caKey)).toContain("holds a private key; give only the certificate of the CA")
    const both = write("both.pem", Fs.readFileSync(ca.caCert, "utf8") + Fs.readFileSync(ca.caKey, "utf8"))
    expect(message(both)).toContain("holds a private key")
    const broken = write("broken.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    expect(message(broken)).toContain("certificate 1 of 1 is not a valid X.509 certificate")
    expect(message(write("huge.pem", Buffer.alloc(2 * 1024 * 1024, 65)))).toContain("is not a CA certificate (at most 1048576)")
    // A bundle: every certificate in it is trusted.
    const bundle = write("bundle.pem", Fs.readFileSync(ca.otherCaCert, "utf8") + Fs.readFileSync(ca.caCert, "utf8"))
    expect(message(bundle)).toBe("accepted")
  })

  it("a FIFO, a device or a socket given as the CA file is refused at once, never waited on or read without end", async () => {
    const fifo = Path.join(dir, "ca.fifo")
    ChildProcess.execFileSync("mkfifo", [fifo])
    // A writer that comes 1.5 s later: a read that waits on the FIFO ends then instead of never.
    const writer = ChildProcess.spawn("sh", ["-c", `sleep 1.5; echo x > '${fifo}'`], { stdio: "ignore" })
    try {
      const started = Date.now()
      expect(message(fifo)).toBe(`--ca-cert ${fifo}: is a FIFO, not a file; give the file that holds the CA's certificate`)
      expect(Date.now() - started).toBeLessThan(1000)
    } finally {
      writer.kill("SIGKILL")
    }
    const started = Date.now()
    expect(message("/dev/zero")).toBe("--ca-cert /dev/zero: is a character device, not a file; give the file that holds the CA's certificate")
    expect(Date.now() - started).toBeLessThan(1000)
    // A link to a regular file is that file.
    const link = Path.join(dir, "link.pem")
    Fs.symlinkSync(ca.caCert, link)
    expect(message(link)).toBe("accepted")
  })

  it("a file of BEGIN lines without an END, or of many certificates, is refused in well under a second", () => {
    const begins = write("begins.pem", "-----BEGIN CERTIFICATE-----\n".repeat(Math.floor(1_000_000 / 28)))
    let started = Date.now()
    expect(message(begins)).toContain("holds no PEM certificate")
    expect(Date.now() - started).toBeLessThan(1000)
    const pem = Fs.readFileSync(ca.caCert, "utf8")
    const many = write("many.pem", pem.repeat(Math.floor(1_000_000 / pem.length)))
    started = Date.now()
    expect(message(many)).toContain("holds more than 200 certificates")
    expect(Date.now() - started).toBeLessThan(1000)
    // A stray BEGIN before a real block does not hide it.
    expect(message(write("stray.pem", "-----BEGIN CERTIFICATE-----\n" + pem))).toBe("accepted")
  })

  it("a trusted CA is summed up by its subject and SHA-256 fingerprint", () => {
    const [summary] = HubTls.summarize(trusting(ca.caCert).ca!.pem)
    const cert = new Crypto.X509Certificate(Fs.readFileSync(ca.caCert))
    expect(summary).toEqual({ subject: cert.subject.split("\n").join(", "), sha256: cert.fingerprint256 })
    expect(summary!.sha256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/)
  })

  it("HTTP calls verify the hub: refused without the CA (saying to pass --ca-cert), accepted with it, refused with another", async () => {
    expect(await get({})).toMatch(
      /^failed: the hub's TLS certificate is not signed by a CA this machine trusts \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\); .*pass --ca-cert FILE \(or set CONNECT_CA_CERT\)/
    )
    expect(await get(trusting(ca.caCert))).toBe("ok")
    expect(await get(trusting(ca.otherCaCert))).toBe(
      `failed: the hub's TLS certificate is not signed by the CA of ${ca.otherCaCert} (UNABLE_TO_VERIFY_LEAF_SIGNATURE); pass the CA that signed it`
    )
  }, 30_000)

  it("the agent's WebSocket dial verifies the hub the same way", async () => {
    expect(await dial({})).toMatch(/^failed: .*pass --ca-cert FILE/)
    expect(await dial(trusting(ca.caCert))).toBe("open")
    expect(await dial(trusting(ca.otherCaCert))).toMatch(/^failed: .*not signed by the CA of/)
  }, 30_000)
})
