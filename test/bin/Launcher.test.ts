/**
 * bin/connect, the `connect` executable: it sets glibc's malloc tuning (keeping a user's GLIBC_TUNABLES, which wins),
 * runs bin/connect.js with CONNECT_NODE or `node` and V8's memory reducer off, passes every argument through
 * untouched, and works through a symlink (npm links bins that way).
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { describe, expect, it } from "vitest"

const launcher = Path.resolve("bin/connect")

const run = (file: string, args: ReadonlyArray<string>, env: Record<string, string>) =>
  ChildProcess.spawnSync(file, args, { env: { PATH: process.env.PATH ?? "", ...env }, encoding: "utf8" })

describe("bin/connect", () => {
  // A stand-in for node that prints what it was given: one line of GLIBC_TUNABLES, then one line per argument.
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-launcher-"))
  const fakeNode = Path.join(dir, "node")
  Fs.writeFileSync(fakeNode, `#!/bin/sh\nprintf '%s\\n' "$GLIBC_TUNABLES" "$@"\n`, { mode: 0o755 })

  it("runs connect.js under CONNECT_NODE with the malloc and V8 tuning and every argument untouched", () => {
    const r = run(launcher, ["hub", "--data-dir", "/tmp/a b", "", "*"], { CONNECT_NODE: fakeNode })
    expect(r.status).toBe(0)
    expect(r.stdout.split("\n")).toEqual([
      "glibc.malloc.trim_threshold=67108864",
      "--no-memory-reducer",
      Path.resolve("bin/connect.js"),
      "hub",
      "--data-dir",
      "/tmp/a b",
      "",
      "*",
      ""
    ])
  })

  it("keeps a GLIBC_TUNABLES already set, after its own so that the user's value wins", () => {
    const r = run(launcher, [], { CONNECT_NODE: fakeNode, GLIBC_TUNABLES: "glibc.malloc.trim_threshold=0" })
    expect(r.stdout.split("\n")[0]).toBe("glibc.malloc.trim_threshold=67108864:glibc.malloc.trim_threshold=0")
  })

  it("finds connect.js next to its real path when invoked through a symlink", () => {
    const link = Path.join(dir, "connect")
    Fs.symlinkSync(launcher, link)
    const r = run(link, ["--version"], { CONNECT_NODE: fakeNode })
    expect(r.stdout.split("\n").slice(2, 4)).toEqual([Path.resolve("bin/connect.js"), "--version"])
  })

  it("runs the real CLI with the node on PATH", () => {
    const r = run(launcher, ["--version"], { PATH: `${Path.dirname(process.execPath)}:${process.env.PATH ?? ""}` })
    expect(r.stderr).toBe("")
    expect(r.status).toBe(0)
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/)
  })
})
