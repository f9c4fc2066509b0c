/**
 * Auto-naming of exposed services from well-known ports.
 */
import { describe, expect, it } from "@effect/vitest"
import { autoName } from "../../agent/AutoName.ts"

describe("AutoName", () => {
  it.each([
    [5432, "postgres"],
    [6379, "redis"],
    [3306, "mysql"],
    [27017, "mongodb"],
    [9200, "elasticsearch"],
    [5672, "rabbitmq"],
    [8080, "http"],
    [3000, "http"],
    [80, "http"],
    [443, "https"]
  ])("port %i is named %s", (port, name) => {
    expect(autoName(port)).toBe(name)
  })

  it("an unknown port is named after the port", () => {
    expect(autoName(41234)).toBe("port-41234")
  })

  it("a well-known name already taken gets the port appended", () => {
    expect(autoName(8080, new Set(["http"]))).toBe("http-8080")
    expect(autoName(5432, new Set(["http"]))).toBe("postgres")
  })
})
