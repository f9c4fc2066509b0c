/**
 * `connect hub --tls-cert --tls-key` as an operator runs it: HTTPS on the hub's port with a throwaway certificate for
 * 127.0.0.1, plain HTTP refused there, and bad TLS flags refused at startup with one clear line.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Https from "node:https"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Tls from "node:tls"
import { Effect, Exit, Scope } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { killTracked, spawn } from "../support/processes.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

let dir: string
let scope: Scope.CloseableScope
let env: NodeJS.ProcessEnv

beforeAll(async () => {
  dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-tls-"))
  ChildProcess.execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
    "-keyout", Path.join(dir, "key.pem"), "-out", Path.join(dir, "cert.pem")
  ], { stdio: "ignore" })
  scope = Effect.runSync(Scope.make())
  const url = await Effect.runPromise(Scope.extend(TestDatabase.makeTestDatabaseUrl, scope))
  env = { ...process.env, DATABASE_URL: url, CONNECT_HOME: dir }
})

afterAll(async () => {
  killTracked()
  await Effect.runPromise(Scope.close(scope, Exit.void))
  Fs.rmSync(dir, { recursive: true, force: true })
})

/** The protocol and suite a TLS 1.2 handshake with only `ciphers` offered agrees on, or "refused". */
const handshake12 = (port: number, ciphers: string) =>
  new Promise<string>((resolve) => {
    const socket = Tls.connect({ host: "127.0.0.1", port, rejectUnauthorized: false, maxVersion: "TLSv1.2", ciphers })
    socket.once("secureConnect", () => {
      resolve(`${socket.getProtocol()} ${socket.getCipher().name}`)
      socket.destroy()
    })
    socket.once("error", () => resolve("refused"))
  })

const get = (url: string, ca?: Buffer) =>
  new Promise<{ status: number; body: string }>((resolve, reject) => {
    const request = Https.get(url, ca ? { ca } : {}, (response) => {
      let body = ""
      response.on("data", (chunk) => (body += chunk))
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body }))
    })
    request.on("error", reject)
    request.setTimeout(10_000, () => request.destroy(new Error("timeout")))
  })

describe("connect hub with TLS", () => {
  it("serves HTTPS with the given certificate and refuses plain HTTP on the same port", async () => {
    const hub = spawn(process.execPath, [
      "bin/connect.js", "hub", "--port", "0",
      "--tls-cert", Path.join(dir, "cert.pem"), "--tls-key", Path.join(dir, "key.pem")
    ], { env })
    const match = await hub.waitFor(/connect hub listening on (https:\/\/127\.0\.0\.1:(\d+))/, 60_000)
    const ca = Fs.readFileSync(Path.join(dir, "cert.pem"))
    const health = await get(`${match[1]}/health`, ca)
    expect(health).toEqual({ status: 200, body: JSON.stringify({ status: "ok" }) })
    // Without the certificate as a trusted CA, a client refuses the hub: it is TLS for real, not decoration.
    await expect(get(`${match[1]}/health`)).rejects.toThrow(/self-signed|self signed/)
    await expect(fetch(`http://127.0.0.1:${match[2]}/health`)).rejects.toThrow()
    // Mozilla "intermediate": CBC suites (SHA-1 or SHA-256 MAC) are refused on TLS 1.2, ECDHE with AES-GCM agreed.
    const port = Number(match[2])
    expect(await handshake12(port, "ECDHE-ECDSA-AES128-SHA")).toBe("refused")
    expect(await handshake12(port, "ECDHE-ECDSA-AES256-SHA384")).toBe("refused")
    expect(await handshake12(port, "ECDHE-ECDSA-AES128-GCM-SHA256")).toBe("TLSv1.2 ECDHE-ECDSA-AES128-GCM-SHA256")
    hub.child.kill("SIGTERM")
    expect(await hub.exited(15_000)).toEqual({ code: 0, signal: null })
  }, 90_000)

  it("--tls-cert without --tls-key, or an unreadable file, exits 2 with one line", async () => {
    const half = spawn(process.execPath, ["bin/connect.js", "hub", "--port", "0", "--tls-cert", Path.join(dir, "cert.pem")], { env })
    expect((await half.exited(60_000)).code).toBe(2)
    expect(half.stderr().trim()).toBe("connect: --tls-cert and --tls-key go together: give both, or neither for plain HTTP")
    const missing = spawn(process.execPath, [
      "bin/connect.js", "hub", "--port", "0",
      "--tls-cert", Path.join(dir, "nope.pem"), "--tls-key", Path.join(dir, "key.pem")
    ], { env })
    expect((await missing.exited(60_000)).code).toBe(2)
    expect(missing.stderr()).toContain(`cannot read the TLS certificate ${Path.join(dir, "nope.pem")}: ENOENT`)
    const swapped = spawn(process.execPath, [
      "bin/connect.js", "hub", "--port", "0",
      "--tls-cert", Path.join(dir, "key.pem"), "--tls-key", Path.join(dir, "cert.pem")
    ], { env })
    expect((await swapped.exited(60_000)).code).toBe(2)
    expect(swapped.stderr()).toContain("the TLS certificate and key are not a usable pair")
  }, 120_000)
})
