/**
 * The headers a link forwards: the body stays framed whatever the client's hop-by-hop headers say (no request
 * smuggling on the pooled connection), and the client's own forwarding headers never reach the service.
 */
import type * as Http from "node:http"
import { describe, expect, it } from "vitest"
import * as LinkTarget from "../../../hub/http/LinkTarget.ts"

/** A request as `forwardHeaders` reads it: raw header pairs, and node's lower-cased view of them. */
const requestOf = (raw: ReadonlyArray<string>) => {
  const headers: Record<string, string> = {}
  for (let i = 0; i < raw.length; i += 2) headers[raw[i]!.toLowerCase()] = raw[i + 1]!
  return { rawHeaders: raw, headers } as unknown as Http.IncomingMessage
}

const names = (pairs: ReadonlyArray<readonly [string, string]>) => pairs.map(([n]) => n.toLowerCase())
const client = { ip: "203.0.113.9", proto: "http" as const }

describe("LinkTarget.forwardHeaders", () => {
  it("a chunked request body goes on chunked (it was sent unframed: a GET's body became a second request)", () => {
    const headers = LinkTarget.forwardHeaders(
      requestOf(["Host", "hub", "Transfer-Encoding", "chunked"]),
      client,
      false
    )
    expect(headers).toContainEqual(["Transfer-Encoding", "chunked"])
  })

  it("Connection cannot nominate Content-Length or Host for removal", () => {
    const headers = LinkTarget.forwardHeaders(
      requestOf(["Host", "hub", "Content-Length", "42", "Connection", "Content-Length, Host, X-Drop", "X-Drop", "1"]),
      client,
      false
    )
    expect(names(headers)).toContain("content-length")
    expect(names(headers)).toContain("host")
    expect(names(headers)).not.toContain("x-drop")
    expect(names(headers)).not.toContain("connection")
  })

  it("the client's Forwarded, X-Real-IP and X-Forwarded-For are replaced by the hub's", () => {
    const headers = LinkTarget.forwardHeaders(
      requestOf(["Host", "hub", "Forwarded", "for=10.0.0.1", "X-Real-IP", "10.0.0.1", "X-Forwarded-For", "10.0.0.1"]),
      client,
      false
    )
    expect(names(headers)).not.toContain("forwarded")
    expect(names(headers)).not.toContain("x-real-ip")
    expect(headers.filter(([n]) => n.toLowerCase() === "x-forwarded-for")).toEqual([["X-Forwarded-For", "203.0.113.9"]])
  })
})

describe("links on the hub's own origin (/l/TOKEN/)", () => {
  it("the client's cookies (the console's session among them) are not forwarded there, and are under a link domain", () => {
    const request = requestOf(["Host", "hub", "Cookie", "connect_console=s3cret"])
    expect(names(LinkTarget.forwardHeaders(request, client, false, true))).not.toContain("cookie")
    expect(names(LinkTarget.forwardHeaders(request, client, false, false))).toContain("cookie")
  })

  it("the service's Set-Cookie is dropped and its page sandboxed into an opaque origin; under a link domain, untouched", () => {
    const raw = ["Content-Type", "text/html", "Set-Cookie", "connect_console=attacker; Path=/"]
    const onHub = LinkTarget.answerHeaders(raw, true)
    expect(names(onHub)).not.toContain("set-cookie")
    expect(onHub).toContainEqual(["Content-Security-Policy", LinkTarget.SANDBOX])
    const own = LinkTarget.answerHeaders(raw, false)
    expect(names(own)).toContain("set-cookie")
    expect(names(own)).not.toContain("content-security-policy")
  })

  it("a request to TOKEN.<link domain> has an origin of its own; /l/TOKEN/ on the hub's host does not", () => {
    const byHost = (host: string) => ({ headers: { host }, url: "/x" }) as unknown as Http.IncomingMessage
    expect(LinkTarget.onHubOrigin(byHost("abc.links.test:8080"), "links.test")).toBe(false)
    expect(LinkTarget.onHubOrigin(byHost("hub.example:8080"), "links.test")).toBe(true)
    expect(LinkTarget.onHubOrigin(byHost("abc.links.test"), undefined)).toBe(true)
  })
})
