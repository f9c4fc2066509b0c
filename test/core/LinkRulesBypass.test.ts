/**
 * Paths a server behind a link reads differently from the link's own check are refused (400), not normalised: each of
 * these reached a service unchanged under a link limited to /api (found by a review of the links change).
 */
import { Either } from "effect"
import { describe, expect, it } from "vitest"
import * as LinkRules from "../../core/LinkRules.ts"

describe("LinkRules.normalisePath against parser differentials", () => {
  it.each([
    ["/api/..;/admin", ";"],
    ["/api/..%3b/admin", ";"],
    ["/api/..%3B/admin", ";"],
    ["/api/x;jsessionid=1", ";"],
    ["/api/%252e%252e/admin", "percent sign"],
    ["/api/%25", "percent sign"],
    ["/api/%c0%ae%c0%ae/admin", "UTF-8"],
    ["/api/%ff", "UTF-8"]
  ])("%s is refused (%s)", (path, why) => {
    const result = LinkRules.normalisePath(path)
    expect(Either.isLeft(result)).toBe(true)
    if (Either.isLeft(result)) expect(result.left.message).toContain(why)
  })

  it("percent-encoded UTF-8 and ordinary escapes still pass, unchanged", () => {
    expect(LinkRules.normalisePath("/api/caf%C3%A9")).toEqual(Either.right("/api/caf%C3%A9"))
    expect(LinkRules.normalisePath("/api/a%20b")).toEqual(Either.right("/api/a%20b"))
  })
})
