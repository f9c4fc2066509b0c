/**
 * What the benchmarks compare the relay with, and the processes they start: a one-hop socat forwarder, `ssh -L`
 * through a throwaway sshd, free ports, and stopping every child by its pid at the end.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"

/** Every child a bench started, stopped in reverse order by `stopAll`. */
export const started: Array<ChildProcess.ChildProcess> = []

/** Stops one child: SIGTERM, then SIGKILL after 2 s. */
export const stop = async (child: ChildProcess.ChildProcess) => {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((r) => child.once("exit", r))
  child.stdin?.end()
  child.kill("SIGTERM")
  const timer = setTimeout(() => child.kill("SIGKILL"), 2_000)
  await exited
  clearTimeout(timer)
}

/** Stops every child started so far, newest first. */
export const stopAll = async () => {
  for (const child of started.splice(0).reverse()) await stop(child)
}

const probe = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = Net.connect({ port, host: "127.0.0.1" })
    socket.once("connect", () => (socket.destroy(), resolve(true)))
    socket.once("error", () => resolve(false))
  })

/** A free TCP port on 127.0.0.1. */
export const freePort = () =>
  new Promise<number>((resolve) => {
    const s = Net.createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as Net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })

/** Resolves once something accepts connections on `port`; throws after `ms`. */
export const waitForPort = async (port: number, ms: number) => {
  const until = Date.now() + ms
  while (Date.now() < until) {
    const ok = await probe(port)
    if (ok) return
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`nothing listens on ${port}`)
}

/** Whether `command` is on the PATH. */
export const have = (command: string) => ChildProcess.spawnSync("sh", ["-c", `command -v ${command}`]).status === 0

/** Installs socat and openssh-server (and `more` packages, as [command, package]) with apt-get when missing. */
export const ensureTools = (more: ReadonlyArray<readonly [string, string]> = []) => {
  const missing = [
    have("socat") ? undefined : "socat",
    Fs.existsSync("/usr/sbin/sshd") ? undefined : "openssh-server",
    ...more.map(([command, pkg]) => (have(command) ? undefined : pkg))
  ]
    .filter((p): p is string => p !== undefined)
  if (missing.length === 0) return
  console.log(`installing ${missing.join(" ")} ...`)
  const install = () => ChildProcess.spawnSync("apt-get", ["install", "-y", ...missing], { stdio: "ignore" }).status
  if (install() !== 0) {
    ChildProcess.spawnSync("apt-get", ["update"], { stdio: "ignore" })
    install()
  }
}

/** Starts a throwaway sshd on 127.0.0.1 and an `ssh -L` to `target`; resolves the local forwarded port. */
export const startSshForward = async (target: number): Promise<number | undefined> => {
  if (!Fs.existsSync("/usr/sbin/sshd") || !have("ssh")) return undefined
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-bench-ssh-"))
  const keygen = (name: string) =>
    ChildProcess.spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", Path.join(dir, name)])
  keygen("host")
  keygen("user")
  Fs.copyFileSync(Path.join(dir, "user.pub"), Path.join(dir, "authorized_keys"))
  Fs.mkdirSync("/run/sshd", { recursive: true })
  const sshPort = await freePort()
  const config = Path.join(dir, "sshd_config")
  Fs.writeFileSync(
    config,
    [
      `Port ${sshPort}`,
      "ListenAddress 127.0.0.1",
      `HostKey ${Path.join(dir, "host")}`,
      `AuthorizedKeysFile ${Path.join(dir, "authorized_keys")}`,
      "StrictModes no",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "UsePAM no",
      "PermitRootLogin prohibit-password",
      "AllowTcpForwarding yes",
      "Ciphers aes128-gcm@openssh.com",
      `PidFile ${Path.join(dir, "sshd.pid")}`
    ].join("\n") + "\n"
  )
  const sshd = ChildProcess.spawn("/usr/sbin/sshd", ["-D", "-e", "-f", config], { stdio: "ignore" })
  started.push(sshd)
  await waitForPort(sshPort, 5_000)
  const local = await freePort()
  const ssh = ChildProcess.spawn(
    "ssh",
    [
      "-N",
      "-L",
      `127.0.0.1:${local}:127.0.0.1:${target}`,
      "-p",
      String(sshPort),
      "-i",
      Path.join(dir, "user"),
      "-o",
      "StrictHostKeyChecking=no",
      "-o",
      "UserKnownHostsFile=/dev/null",
      "-o",
      "BatchMode=yes",
      "-o",
      "ExitOnForwardFailure=yes",
      "-o",
      "Ciphers=aes128-gcm@openssh.com",
      "-o",
      "LogLevel=ERROR",
      `${Os.userInfo().username}@127.0.0.1`
    ],
    { stdio: "ignore" }
  )
  started.push(ssh)
  await waitForPort(local, 10_000)
  return local
}

/** Starts a socat forwarder (TCP_NODELAY both sides, 64 KiB buffer) to `to`; resolves its port. */
export const socatForward = async (to: number): Promise<number> => {
  const port = await freePort()
  const socat = ChildProcess.spawn(
    "socat",
    ["-b", "65536", `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork,nodelay`, `TCP:127.0.0.1:${to},nodelay`],
    { stdio: "ignore" }
  )
  started.push(socat)
  await waitForPort(port, 5_000)
  return port
}
