import { describe, expect, it } from "@effect/vitest"
import { describeCause, messageOf } from "../../core/ErrorMessage.ts"

describe("ErrorMessage", () => {
  it("messageOf gives an error's message, or the thing itself as text", () => {
    expect(messageOf(new Error("disk full"))).toBe("disk full")
    expect(messageOf({ message: 42 })).toBe("42")
    expect(messageOf("plain")).toBe("plain")
    expect(messageOf(undefined)).toBe("undefined")
  })

  it("describeCause names what a connection failure hides: both addresses of an AggregateError, nested causes, a code", () => {
    const refused = (address: string) =>
      Object.assign(new Error(`connect ECONNREFUSED ${address}:1`), { code: "ECONNREFUSED" })
    // What node's happy-eyeballs connect throws when ::1 and 127.0.0.1 both refuse: an AggregateError without a message.
    expect(describeCause(new AggregateError([refused("::1"), refused("127.0.0.1")], "")))
      .toBe("connect ECONNREFUSED ::1:1; connect ECONNREFUSED 127.0.0.1:1")
    expect(describeCause(new Error("pool failed", { cause: new Error("password authentication failed") })))
      .toBe("pool failed: password authentication failed")
    expect(describeCause(Object.assign(new Error(""), { code: "ETIMEDOUT" }))).toBe("ETIMEDOUT")
    expect(describeCause(new Error("two\n  lines"))).toBe("two lines")
    expect(describeCause({ not: "an error" })).toBe("unknown error")
  })
})
