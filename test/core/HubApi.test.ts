import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import * as HubApi from "../../core/HubApi.ts"

describe("the hub API declaration", () => {
  it.effect("sends every error answer as {error:{code,message}} with its status, and reads it back as its tagged error", () =>
    Effect.gen(function*() {
      const statuses: Record<string, number> = {}
      for (const [code, answer] of Object.entries(HubApi.Errors)) {
        const schema: Schema.Schema.AnyNoContext = answer
        statuses[code] = HttpApiSchema.getStatusError(schema)
        const decoded = yield* Schema.decodeUnknown(schema)({ error: { code, message: "why" } })
        expect(decoded).toMatchObject({ _tag: code, message: "why" })
        expect(yield* Schema.encode(schema)(decoded)).toEqual({ error: { code, message: "why" } })
        expect(HubApi.statusOf(code)).toBe(statuses[code])
      }
      expect(statuses).toEqual({
        BadRequest: 400,
        Invalid: 400,
        Unauthorized: 401,
        Revoked: 401,
        Forbidden: 403,
        NotFound: 404,
        AlreadyExists: 409,
        Conflict: 409,
        BodyTooLarge: 413,
        TooManyRequests: 429,
        Unavailable: 503
      })
      // An answer with another code is not this error (two errors share a status; the client tells them apart by it).
      expect(Schema.is(Schema.encodedSchema(HubApi.Errors.Invalid))({ error: { code: "BadRequest", message: "" } })).toBe(false)
    }))

  it.effect("a label is 1 to 200 characters, not blank, and recordable; the rule's message names the field", () =>
    Effect.gen(function*() {
      const check = (label: unknown) =>
        Schema.decodeUnknown(HubApi.ProvisionRequest)({ label }).pipe(
          Effect.match({ onSuccess: () => "ok", onFailure: HubApi.describeIssues })
        )
      expect(yield* check("laptop")).toBe("ok")
      expect(yield* check("y".repeat(200))).toBe("ok")
      for (const bad of ["", "   ", "y".repeat(201), 42, null]) {
        expect(yield* check(bad)).toBe("label must be a non-empty string of at most 200 characters")
      }
      for (const bad of ["a\u0000b", "a\ud800b", "\udc00"]) {
        expect(yield* check(bad)).toBe("label must not contain U+0000 or an unpaired surrogate")
      }
      expect(yield* Schema.decodeUnknown(HubApi.ProvisionRequest)({})).toEqual({})
    }))
})
