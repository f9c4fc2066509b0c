import { describe, expect, it } from "vitest"
import { isRecordable, sanitize } from "../../core/Text.ts"

describe("Text.sanitize", () => {
  it("keeps ordinary text, including astral characters, as it is", () => {
    expect(sanitize("connect-agent/0.1.0", 64)).toBe("connect-agent/0.1.0")
    expect(sanitize("db-😀-1", 64)).toBe("db-😀-1")
  })

  it("replaces U+0000 and lone surrogates with U+FFFD", () => {
    expect(sanitize("a\u0000b", 64)).toBe("a\uFFFDb")
    expect(sanitize("a\uD800b", 64)).toBe("a\uFFFDb")
    expect(sanitize("a\uDC00b", 64)).toBe("a\uFFFDb")
    expect(sanitize("\uDC00\uD800", 64)).toBe("\uFFFD\uFFFD")
    expect(isRecordable(sanitize("x\uD800\u0000\uDFFF", 64))).toBe(true)
  })

  it("caps by code points and never splits a surrogate pair", () => {
    expect(sanitize("abcdef", 4)).toBe("abc…")
    const cut = sanitize("😀".repeat(10), 4)
    expect(cut).toBe("😀😀😀…")
    expect(isRecordable(cut)).toBe(true)
    // "a" then pairs: a code-unit slice at 4 would split the second pair.
    expect(sanitize("a😀😀😀", 3)).toBe("a😀…")
  })

  it("cuts 1 MB to the cap", () => {
    const big = "v".repeat(1024 * 1024)
    expect(Array.from(sanitize(big, 64))).toHaveLength(64)
    expect(Array.from(sanitize("😀".repeat(512 * 1024), 64))).toHaveLength(64)
  })

  it("records a non-string as its type", () => {
    expect(sanitize(undefined, 64)).toBe("[undefined]")
    expect(sanitize(null, 64)).toBe("[null]")
    expect(sanitize(42, 64)).toBe("[number]")
  })
})

describe("Text.isRecordable", () => {
  it("tells recordable text from text Postgres or UTF-8 would refuse", () => {
    expect(isRecordable("plain 😀")).toBe(true)
    expect(isRecordable("nul\u0000")).toBe(false)
    expect(isRecordable("lone\uD83D")).toBe(false)
    expect(isRecordable("\uDE00lone")).toBe(false)
  })
})
