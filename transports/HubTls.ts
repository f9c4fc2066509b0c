/**
 * How a client of the hub (the agent's gateway connection and API calls, the remote admin and audit commands) trusts
 * the hub's TLS certificate: the system's CAs, plus a private CA's certificate given with `--ca-cert FILE` or
 * `CONNECT_CA_CERT`. Every connection verifies; nothing here turns verification off. A certificate the client does
 * not trust is explained in one line that says what to pass.
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Tls from "node:tls"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import type * as HttpClient from "@effect/platform/HttpClient"
import { Context, Effect, Layer, Schema } from "effect"

/** The environment variable that stands for `--ca-cert`. */
export const CA_CERT_ENV = "CONNECT_CA_CERT"

/** A CA file that cannot be used: unreadable, too large, or holding no valid certificate. */
export class CaCertError extends Schema.TaggedError<CaCertError>()("CaCertError", {
  message: Schema.String
}) {}

/** The CA certificates a client adds to the system's to verify the hub: PEM text, and the file it came from. */
export interface TrustShape {
  readonly ca?: { readonly pem: string; readonly file: string }
}

/** What the current command trusts; by default the system's CAs only. */
export class Trust extends Context.Reference<Trust>()("connect/transports/HubTls/Trust", {
  defaultValue: (): TrustShape => ({})
}) {}

/** A CA bundle is a few KiB; a file past this is not one (and is not read into memory whole). */
const MAX_CA_FILE_BYTES = 1024 * 1024

const BEGIN = "-----BEGIN CERTIFICATE-----"
const END = "-----END CERTIFICATE-----"

/** More certificates than any CA bundle a hub is verified with holds. */
const MAX_CERTIFICATES = 200

/**
 * The PEM certificate blocks of `text`, in order, found with `indexOf`: a lazy regular expression across them took
 * time growing with the square of the file (an attacker's review: 1 MiB of BEGIN lines without an END, 80 s).
 */
const pemBlocks = (text: string): Array<string> => {
  const blocks: Array<string> = []
  let from = 0
  while (blocks.length <= MAX_CERTIFICATES) {
    const begin = text.indexOf(BEGIN, from)
    if (begin < 0) break
    const end = text.indexOf(END, begin + BEGIN.length)
    if (end < 0) break
    // A BEGIN line followed by a line break, as PEM has it; a BEGIN within the block means the first was not one.
    const body = begin + BEGIN.length
    const inner = text.lastIndexOf(BEGIN, end)
    if (inner === begin && (text[body] === "\n" || (text[body] === "\r" && text[body + 1] === "\n"))) {
      blocks.push(text.slice(begin, end + END.length))
      from = end + END.length
    } else {
      from = inner > begin ? inner : body
    }
  }
  return blocks
}

/** What a file that is not a regular file is, for the one line that refuses it. */
const kindOf = (stat: Fs.Stats): string =>
  stat.isFIFO()
    ? "a FIFO"
    : stat.isCharacterDevice()
    ? "a character device"
    : stat.isBlockDevice()
    ? "a block device"
    : stat.isDirectory()
    ? "a directory"
    : stat.isSocket()
    ? "a socket"
    : "not a regular file"

/**
 * The text of `file`, at most `MAX_CA_FILE_BYTES`, or why not. Opened without blocking and checked on the open
 * descriptor: a FIFO's read would wait for a writer forever, a device like /dev/zero never ends (both stat as 0 bytes),
 * and a file swapped between a check by name and the read would escape the check.
 */
const readBounded = (file: string): { readonly text: string } | { readonly why: string } => {
  let fd: number | undefined
  try {
    fd = Fs.openSync(file, Fs.constants.O_RDONLY | (Fs.constants.O_NONBLOCK ?? 0))
    const stat = Fs.fstatSync(fd)
    if (!stat.isFile()) return { why: `is ${kindOf(stat)}, not a file; give the file that holds the CA's certificate` }
    if (stat.size > MAX_CA_FILE_BYTES) return { why: `${stat.size} bytes is not a CA certificate (at most ${MAX_CA_FILE_BYTES})` }
    // One byte more than the bound: a file that grows past it while read is refused too, never read on and on.
    const buffer = Buffer.alloc(MAX_CA_FILE_BYTES + 1)
    let length = 0
    for (let n = -1; n !== 0 && length < buffer.length;) {
      n = Fs.readSync(fd, buffer, length, buffer.length - length, null)
      length += n
    }
    if (length > MAX_CA_FILE_BYTES) return { why: `it grew past ${MAX_CA_FILE_BYTES} bytes while read; not a CA certificate` }
    return { text: buffer.subarray(0, length).toString("latin1") }
  } catch (error) {
    const e = error as NodeJS.ErrnoException
    return { why: `cannot read it (${e.code ?? e.message})` }
  } finally {
    if (fd !== undefined) Fs.closeSync(fd)
  }
}

/**
 * Checks `text` (`what` names where it came from in messages: `--ca-cert ca.pem`): one or more PEM certificates, each
 * parsed, or one line saying what is wrong. A private key is refused: only the CA's certificate belongs on a client.
 */
const parseCaCert = (text: string, file: string, what = `--ca-cert ${file}`): Effect.Effect<TrustShape, CaCertError> => {
  const fail = (why: string) => Effect.fail(new CaCertError({ message: `${what}: ${why}` }))
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) {
    return fail("holds a private key; give only the certificate of the CA that signed the hub's certificate")
  }
  const blocks = pemBlocks(text)
  if (blocks.length > MAX_CERTIFICATES) {
    return fail(`holds more than ${MAX_CERTIFICATES} certificates; give the CA that signed the hub's certificate`)
  }
  if (blocks.length === 0) {
    return fail("holds no PEM certificate (expected -----BEGIN CERTIFICATE-----, the CA's certificate in PEM)")
  }
  for (const [i, block] of blocks.entries()) {
    try {
      new Crypto.X509Certificate(block)
    } catch {
      return fail(`certificate ${i + 1} of ${blocks.length} is not a valid X.509 certificate`)
    }
  }
  return Effect.succeed({ ca: { pem: blocks.join("\n"), file } })
}

/**
 * Reads `file` (`what` names it in messages: `--ca-cert ca.pem`): a regular file of at most 1 MiB holding one or more
 * PEM certificates, each parsed, or one line saying what is wrong.
 */
export const readCaCert = (file: string, what = `--ca-cert ${file}`): Effect.Effect<TrustShape, CaCertError> =>
  Effect.suspend(() => {
    const read = readBounded(file)
    return "why" in read ? Effect.fail(new CaCertError({ message: `${what}: ${read.why}` })) : parseCaCert(read.text, file, what)
  })

/** Who a trusted CA certificate names and its SHA-256 fingerprint: what `connect status` shows of it. */
export interface CaSummary {
  readonly subject: string
  readonly sha256: string
}

/** The subject and SHA-256 fingerprint of each certificate of `pem` (checked already by `readCaCert`). */
export const summarize = (pem: string): ReadonlyArray<CaSummary> =>
  pemBlocks(pem).map((block) => {
    const cert = new Crypto.X509Certificate(block)
    return { subject: cert.subject.split("\n").join(", "), sha256: cert.fingerprint256 }
  })

/**
 * The trust of a command from its `--ca-cert` (`flag`), else `CONNECT_CA_CERT`, else the system's CAs only; the file is
 * read and checked now, so a bad one fails before anything is sent.
 */
export const resolve = (flag: string | undefined, env: NodeJS.ProcessEnv = process.env): Effect.Effect<TrustShape, CaCertError> => {
  if (flag !== undefined) return readCaCert(flag, `--ca-cert ${flag}`)
  const fromEnv = env[CA_CERT_ENV]
  return fromEnv === undefined || fromEnv === "" ? Effect.succeed({}) : readCaCert(fromEnv, `${CA_CERT_ENV}=${fromEnv}`)
}

/** The `ca` option of a TLS client: the system's CAs and the given one (Node replaces the defaults with `ca`). */
export const caOption = (trust: TrustShape): { ca?: Array<string> } =>
  trust.ca === undefined ? {} : { ca: [...Tls.rootCertificates, trust.ca.pem] }

/** An HTTP client (Node's https) that verifies the hub with the system's CAs and the trusted one. */
export const httpClientLayer = (trust: TrustShape): Layer.Layer<HttpClient.HttpClient> =>
  NodeHttpClient.layerWithoutAgent.pipe(
    Layer.provide(NodeHttpClient.makeAgentLayer(caOption(trust)))
  )

/** OpenSSL's codes for a certificate chain the client does not trust. */
const UNTRUSTED = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_UNTRUSTED",
  "CERT_SIGNATURE_FAILURE"
])

/** The innermost error with a code: fetch's "fetch failed" holds the socket's error as its cause. */
const codeOf = (error: unknown): { readonly code?: string; readonly message?: string } | undefined => {
  let e = error as { code?: unknown; message?: unknown; cause?: unknown } | undefined
  for (let depth = 0; e !== undefined && e !== null && depth < 4; depth++) {
    if (typeof e.code === "string") return { code: e.code, ...(typeof e.message === "string" ? { message: e.message } : {}) }
    e = e.cause as typeof e
  }
  const top = error as { message?: unknown } | undefined
  return typeof top?.message === "string" ? { message: top.message } : undefined
}

/**
 * Why a connection to the hub failed, for a message after "cannot reach the hub at URL: ": the socket's error code
 * and, for a certificate the client does not trust, what to pass.
 */
export const describe = (error: unknown, trust: TrustShape): string => {
  const found = codeOf(error)
  const code = found?.code
  const detail = found?.message ?? code ?? String(error)
  if (code !== undefined && UNTRUSTED.has(code)) {
    return trust.ca === undefined
      ? `the hub's TLS certificate is not signed by a CA this machine trusts (${code}); if it comes from a private ` +
        `CA, pass --ca-cert FILE (or set ${CA_CERT_ENV}) with that CA's certificate`
      : `the hub's TLS certificate is not signed by the CA of ${trust.ca.file} (${code}); pass the CA that signed it`
  }
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") return `the hub's TLS certificate does not name this host (${detail})`
  if (code === "CERT_HAS_EXPIRED" || code === "CERT_NOT_YET_VALID") return `the hub's TLS certificate is not valid now (${code})`
  return code ?? detail
}
