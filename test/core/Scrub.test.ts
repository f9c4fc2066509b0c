/**
 * The scrubber: secrets by shape (API keys keep their prefix, tokens and bearer values go) and by the set this process
 * knows; ordinary text is left alone.
 */
import { describe, expect, it } from "@effect/vitest"
import { generateAgentToken, generateApiKey } from "../../core/Secrets.ts"
import { REDACTED, remember, scrub } from "../../core/Scrub.ts"

describe("scrub", () => {
  it("removes an API key but keeps its prefix, and removes an agent token", () => {
    const key = generateApiKey()
    const token = generateAgentToken()
    const out = scrub(`refused ${key} and ${token}.`)
    expect(out).toBe(`refused ${key.slice(0, 9)}…${REDACTED} and ${REDACTED}.`)
  })

  it("removes share codes (prefix kept) and link tokens, in paths and host names", () => {
    const code = `sh_${"Ab1".repeat(10)}xy`
    const token = "0123456789abcdef0123456789abcdef01234567"
    expect(scrub(`join ${code}`)).toBe(`join sh_Ab1Ab1…${REDACTED}`)
    expect(scrub(`GET /l/${token}/x https://${token}.links.example.com/`)).toBe(
      `GET /l/${REDACTED}/x https://${REDACTED}.links.example.com/`
    )
  })

  it("removes bearer values, URL passwords and secret query parameters", () => {
    expect(scrub("authorization: Bearer abc.def")).toBe(`authorization: Bearer ${REDACTED}`)
    expect(scrub("postgres://app:s3cret@db:5432/x")).toBe(`postgres://app:${REDACTED}@db:5432/x`)
    expect(scrub("GET /l?token=XyZ123&x=1")).toBe(`GET /l?token=${REDACTED}&x=1`)
  })

  it("removes a remembered secret of any shape, wherever it is", () => {
    remember("sh_Zq81Kd0pW2mX9")
    expect(scrub("code=sh_Zq81Kd0pW2mX9;again:sh_Zq81Kd0pW2mX9")).toBe(`code=${REDACTED};again:${REDACTED}`)
  })

  it("leaves ordinary text, ids and short hex alone", () => {
    const line = "agent 0190c7a2-1b2c-7d3e-8f40-123456789abc connected from 203.0.113.x (head 3fa9c2)"
    expect(scrub(line)).toBe(line)
  })
})
