/**
 * A private CA made with `openssl` for a test: the CA's certificate, a server certificate for 127.0.0.1 signed by it
 * (with its key), and a second, unrelated CA whose certificate must not make the server trusted.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"

/** The files of a private CA under a directory. */
export interface PrivateCa {
  /** The CA's certificate (what `--ca-cert` is given). */
  readonly caCert: string
  /** The CA's private key (never given to a client). */
  readonly caKey: string
  /** The server's certificate for IP 127.0.0.1, signed by the CA. */
  readonly serverCert: string
  readonly serverKey: string
  /** Another CA's certificate, which did not sign the server's. */
  readonly otherCaCert: string
}

const openssl = (args: ReadonlyArray<string>) => ChildProcess.execFileSync("openssl", args, { stdio: "ignore" })

const selfSignedCa = (dir: string, name: string) => {
  const cert = Path.join(dir, `${name}.pem`)
  const key = Path.join(dir, `${name}.key`)
  openssl([
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
    "-subj", `/CN=connect test ${name}`, "-addext", "basicConstraints=critical,CA:TRUE",
    "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout", key, "-out", cert
  ])
  return { cert, key }
}

/** Makes the CA, the server certificate it signs and another CA in `dir` (which must exist). */
export const make = (dir: string): PrivateCa => {
  const ca = selfSignedCa(dir, "ca")
  const other = selfSignedCa(dir, "other-ca")
  const serverKey = Path.join(dir, "server.key")
  const csr = Path.join(dir, "server.csr")
  const serverCert = Path.join(dir, "server.pem")
  const ext = Path.join(dir, "server.ext")
  openssl([
    "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=127.0.0.1",
    "-keyout", serverKey, "-out", csr
  ])
  Fs.writeFileSync(ext, "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
  openssl([
    "x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial", "-days", "2",
    "-extfile", ext, "-out", serverCert
  ])
  return { caCert: ca.cert, caKey: ca.key, serverCert, serverKey, otherCaCert: other.cert }
}
