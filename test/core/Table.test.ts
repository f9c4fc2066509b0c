/**
 * The one table printer of the admin and agent listings and the bench reports: columns as wide as their widest cell,
 * two spaces apart, left-aligned without trailing spaces or right-aligned under a rule.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Table from "../../core/Table.ts"

describe("Table.format", () => {
  it("left-aligns every column to its widest cell and cuts trailing spaces", () => {
    expect(Table.format([["ID", "NAME"], ["1", "admin"], ["22", "x"]])).toBe(["ID  NAME", "1   admin", "22  x"].join("\n"))
  })

  it("right-aligns under a rule of dashes", () => {
    expect(Table.format([["n", "ms"], ["1", "12.5"], ["10", "3"]], { align: "right", rule: true })).toBe(
      [" n    ms", "--  ----", " 1  12.5", "10     3"].join("\n")
    )
  })

  it("keeps a column at its least width whatever its cells", () => {
    expect(Table.format([["NAME", "STATUS", "AGENT"], ["db", "online", "(a)"]], { minWidths: [0, 7] })).toBe(
      ["NAME  STATUS   AGENT", "db    online   (a)"].join("\n")
    )
  })
})
