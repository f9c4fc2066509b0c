/**
 * The control socket as a local client drives it: a malformed request (a port outside 1-65535, a missing field, an
 * unknown operation) is a clear `BadRequest` that never reaches the agent, and an agent that fails unexpectedly
 * answers `Internal` with a message, never a stack trace.
 */
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import * as Control from "../../agent/Control.ts"

const dirs: Array<string> = []
afterAll(() => {
  for (const dir of dirs) Fs.rmSync(dir, { recursive: true, force: true })
})

/** Serves `handle` on a fresh socket; returns its path, the requests that reached the handler, and a stop. */
const serve = async (handle: (request: Control.Request) => Promise<Control.Response>) => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-control-"))
  dirs.push(dir)
  const path = Path.join(dir, "agent.sock")
  const seen: Array<Control.Request> = []
  const scope = Effect.runSync(Scope.make())
  await Effect.runPromise(Scope.extend(Control.serve(path, (r) => (seen.push(r), handle(r))), scope))
  return { path, seen, stop: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

/** Sends one raw line and returns the parsed answer. */
const raw = (path: string, line: string) =>
  new Promise<Control.Response>((resolve, reject) => {
    const socket = Net.connect(path, () => socket.write(`${line}\n`))
    let buffer = ""
    socket.on("data", (chunk) => {
      buffer += chunk.toString()
      if (buffer.includes("\n")) {
        socket.destroy()
        resolve(JSON.parse(buffer.slice(0, buffer.indexOf("\n"))) as Control.Response)
      }
    })
    socket.on("error", reject)
  })

const failure = (response: Control.Response) => (response.ok ? { code: "ok", message: "" } : response.error)

describe("Control", () => {
  it("answers a malformed request with BadRequest without passing it to the agent", async () => {
    const control = await serve(async () => ({ ok: true, result: "done" }))
    const port = await Effect.runPromise(
      Effect.flip(Control.request(control.path, { op: "expose", name: "db", host: "127.0.0.1", port: 70_000 }))
    )
    expect(port).toMatchObject({ reason: "Failed", code: "BadRequest" })
    expect(port.message).toContain("1-65535")
    expect(port.message).not.toMatch(/\n\s+at /)
    for (const line of [
      `{"op":"expose","name":"db","host":"127.0.0.1","port":0}`,
      `{"op":"expose","name":"db","host":"127.0.0.1","port":"5432"}`,
      `{"op":"expose","name":"db","port":5432}`,
      `{"op":"expose","name":"db","host":"${"x".repeat(300)}","port":5432}`,
      `{"op":"reach","name":"db","port":65536}`,
      `{"op":"launch"}`,
      `[1,2]`,
      `null`
    ]) {
      const answer = failure(await raw(control.path, line))
      expect(answer.code, line).toBe("BadRequest")
      expect(answer.message.length, line).toBeLessThan(400)
    }
    expect(control.seen).toEqual([])
    expect(await Effect.runPromise(Control.request(control.path, { op: "expose", name: "db", host: "127.0.0.1", port: 65_535 })))
      .toBe("done")
    expect(await Effect.runPromise(Control.request(control.path, { op: "reach", name: "db" }))).toBe("done")
    await control.stop()
  })

  it("answers an unexpected failure of the agent with Internal and a message, no stack trace", async () => {
    const control = await serve(() => Effect.runPromise(Effect.die(new RangeError("port out of range"))))
    const error = await Effect.runPromise(Effect.flip(Control.request(control.path, { op: "status" })))
    expect(error).toMatchObject({ reason: "Failed", code: "Internal" })
    expect(error.message).toContain("port out of range")
    expect(error.message).not.toMatch(/\n\s+at |\.ts:\d+/)
    await control.stop()
  })
})
