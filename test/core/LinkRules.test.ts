import { Either } from "effect"
import { describe, expect, it } from "vitest"
import * as LinkRules from "../../core/LinkRules.ts"

const normal = (path: string) => LinkRules.normalisePath(path)

describe("LinkRules.normalisePath", () => {
  it("resolves dot segments and keeps everything else as sent", () => {
    expect(normal("/")).toEqual(Either.right("/"))
    expect(normal("/api/v1/users")).toEqual(Either.right("/api/v1/users"))
    expect(normal("/api/v1/")).toEqual(Either.right("/api/v1/"))
    expect(normal("/api/v1/x/../y")).toEqual(Either.right("/api/v1/y"))
    expect(normal("/api/./v1")).toEqual(Either.right("/api/v1"))
    expect(normal("/api/v1/../admin")).toEqual(Either.right("/api/admin"))
    expect(normal("/a%20b/%C3%A9")).toEqual(Either.right("/a%20b/%C3%A9"))
  })

  it("refuses what does not normalise cleanly", () => {
    for (
      const path of [
        "/api/v1/%2e%2e/admin",
        "/api/v1/%2E%2E/admin",
        "/api/v1/%2fadmin",
        "/api/v1/%5cadmin",
        "/api/v1/%00",
        "/api/v1/\u0000",
        "/api/v1\\..\\admin",
        "//admin",
        "/api//v1",
        "/..",
        "/api/../../etc",
        "/api/%zz",
        "api",
        "/" + "a".repeat(9000)
      ]
    ) {
      expect(Either.isLeft(normal(path)), path.slice(0, 40)).toBe(true)
    }
  })
})

describe("LinkRules prefixes", () => {
  it("matches whole segments only", () => {
    expect(LinkRules.allowedPath("/api/v1", ["/api/v1"])).toBe(true)
    expect(LinkRules.allowedPath("/api/v1/x", ["/api/v1"])).toBe(true)
    expect(LinkRules.allowedPath("/api/v10", ["/api/v1"])).toBe(false)
    expect(LinkRules.allowedPath("/admin", ["/api/v1", "/health"])).toBe(false)
    expect(LinkRules.allowedPath("/anything", ["/"])).toBe(true)
  })

  it("refuses prefixes that are not normal, and hostile input", () => {
    expect(LinkRules.parsePaths("/api/v1,/health/")).toEqual(Either.right(["/api/v1", "/health"]))
    for (const bad of ["api", "/a/../b", "/a//b", "/a%2e", "/a\\b", "/a\u0000", "", "/" + "x".repeat(300)]) {
      expect(Either.isLeft(LinkRules.parsePaths(bad)), bad.slice(0, 20)).toBe(true)
    }
    expect(Either.isLeft(LinkRules.parsePaths(Array(40).fill("/a").map((p, i) => p + i).join(",")))).toBe(true)
  })
})

describe("LinkRules options", () => {
  it("parses expiry, methods and rates, and says what is wrong otherwise", () => {
    expect(LinkRules.parseExpires("30d")).toEqual(Either.right(30 * 86_400_000))
    expect(LinkRules.parseExpires("2s")).toEqual(Either.right(2_000))
    expect(Either.isLeft(LinkRules.parseExpires("400d"))).toBe(true)
    expect(Either.isLeft(LinkRules.parseExpires("0s"))).toBe(true)
    expect(Either.isLeft(LinkRules.parseExpires("soon"))).toBe(true)
    expect(LinkRules.parseMethods("get, head,GET")).toEqual(Either.right(["GET", "HEAD"]))
    expect(Either.isLeft(LinkRules.parseMethods("GET,TRACE"))).toBe(true)
    expect(LinkRules.parseRate("100/min")).toEqual(Either.right(100))
    expect(LinkRules.parseRate("10/s")).toEqual(Either.right(600))
    expect(LinkRules.parseRate("120/hour")).toEqual(Either.right(2))
    expect(Either.isLeft(LinkRules.parseRate("10/hour"))).toBe(true)
    expect(Either.isLeft(LinkRules.parseRate("0/min"))).toBe(true)
    expect(Either.isLeft(LinkRules.parseRate("1".repeat(1_000_000) + "/min"))).toBe(true)
  })

  it("draws 160-bit lowercase tokens", () => {
    const a = LinkRules.generateLinkToken()
    expect(a).toMatch(/^[0-9a-f]{40}$/)
    expect(LinkRules.looksLikeLinkToken(a)).toBe(true)
    expect(a).not.toBe(LinkRules.generateLinkToken())
  })
})
