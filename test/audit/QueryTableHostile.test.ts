/**
 * `connect audit`'s table prints what agents chose (the names they asked to reach, actor ids of foreign events, types
 * the build does not know): a control sequence among them must not reach the reader's terminal, where it could clear
 * the screen and draw fake rows, retitle the window or write the clipboard (OSC 52).
 */
import { describe, expect, it } from "@effect/vitest"
import { formatTable, type AuditRecord } from "../../audit/QueryCli.ts"

const record = (over: Partial<AuditRecord>): AuditRecord => ({
  position: 7,
  id: "01900000-0000-7000-8000-000000000007",
  prevHash: "00".repeat(32),
  hash: "11".repeat(32),
  type: "ReachDenied",
  group: "tunnel",
  outcome: "denied",
  stream: "agent-x",
  version: 3,
  workspace: null,
  recordedAt: "2026-11-30T10:00:00.000Z",
  data: { requestedName: "db", reason: "not_found" },
  meta: { actor: { kind: "agent", id: "a" } },
  ...over
})

describe("audit table: hostile text from the log", () => {
  it("keeps escape sequences, C1 controls and bidi overrides out of the terminal", () => {
    const hostile = [
      "\u001b[2J\u001b[H",
      "\u001b]52;c;cm0gLXJmIH4=\u0007",
      "\u009b31m",
      "x\r\n2026-11-30 09:00:00Z  1  AgentProvisioned",
      "\u202egnp.exe"
    ]
    const table = formatTable([
      ...hostile.map((name) => record({ data: { requestedName: name, reason: "not_found" } })),
      record({ type: "Foreign\u001b[31mType", meta: { actor: { kind: "agent\u001b[8m", id: "\u001b]0;t\u0007" } } })
    ])
    // eslint-disable-next-line no-control-regex
    expect(table).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/)
    // One line per record and the header: nothing forged a row.
    expect(table.split("\n")).toHaveLength(1 + hostile.length + 1)
  })
})
