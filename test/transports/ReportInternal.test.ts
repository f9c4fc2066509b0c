/**
 * A connection handler's exception is reported on stderr with the peer's address masked and no secret in it (the
 * error's message may carry what the peer sent).
 */
import { afterEach, describe, expect, it, vi } from "vitest"
import { generateApiKey } from "../../core/Secrets.ts"
import { reportInternal } from "../../transports/Framing.ts"

afterEach(() => {
  vi.restoreAllMocks()
})

describe("reportInternal", () => {
  it("masks the peer and scrubs the error", () => {
    const lines: Array<string> = []
    vi.spyOn(console, "error").mockImplementation((...args: Array<unknown>) => void lines.push(args.map(String).join(" ")))
    const key = generateApiKey()
    reportInternal("ws", "203.0.113.77:4242", new Error(`handler choked on Bearer ${key}`))
    expect(lines).toHaveLength(1)
    expect(lines[0]).toContain("connection from 203.0.113.x after an internal error")
    expect(lines[0]).not.toContain("203.0.113.77")
    expect(lines[0]).not.toContain(key)
  })
})
