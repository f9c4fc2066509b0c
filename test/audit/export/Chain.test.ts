/**
 * What the export promises a consumer: from the records alone it can detect a gap (positions) and verify the chain
 * (each hash recomputed from the record, each prevHash the previous record's hash), in every format.
 */
import { assert, describe, it } from "@effect/vitest"
import { createHash } from "node:crypto"
import { canonicalText, GENESIS_HASH, jsonbText } from "../../../core/HashChain.ts"
import { Formats, record } from "../../../audit/export/Format.ts"
import { parse5424, parseCef } from "./Parsers.ts"
import { stored } from "./Samples.ts"

const context = { productVersion: "0.1.0", hostname: "exporter.example" }

/** The chain as a consumer reads it from one record of each format. */
const chainOf = (format: (typeof Formats)[number], line: string) => {
  switch (format) {
    case "jsonl":
      return JSON.parse(line) as { position: number; id: string; prevHash: string; hash: string }
    case "ecs": {
      const doc = JSON.parse(line)
      return { position: doc.event.sequence, id: doc.event.id, prevHash: doc.connect.prev_hash, hash: doc.event.hash }
    }
    case "ocsf": {
      const event = JSON.parse(line)
      const chain = event.unmapped.connect
      return { position: event.metadata.sequence, id: event.metadata.uid, prevHash: chain.prev_hash, hash: chain.hash }
    }
    case "cef": {
      const { extension } = parseCef(line)
      return { position: Number(extension.cn1), id: extension.externalId!, prevHash: extension.cs2!, hash: extension.cs1! }
    }
    case "syslog": {
      const params = parse5424(line).sd[0]!.params
      return { position: Number(params.position), id: params.id!, prevHash: params.prevHash!, hash: params.hash! }
    }
  }
}

describe("chain in the export", () => {
  it("jsonl: every hash recomputes from its line alone, and links to the line before", () => {
    let prev = Buffer.from(GENESIS_HASH).toString("hex")
    for (const e of stored) {
      const line = JSON.parse(record("jsonl", e, context))
      const canonical = canonicalText(
        line.position,
        line.id,
        line.stream,
        line.version,
        line.workspaceId,
        line.type,
        jsonbText(line.data),
        jsonbText(line.meta),
        Date.parse(line.recordedAt)
      )
      const hash = createHash("sha256").update(Buffer.from(line.prevHash, "hex")).update(canonical, "utf8").digest("hex")
      assert.strictEqual(line.prevHash, prev, `position ${line.position} links to its predecessor`)
      assert.strictEqual(hash, line.hash, `position ${line.position} recomputes`)
      prev = hash
    }
  })

  it("jsonl: a line whose payload was altered no longer recomputes", () => {
    const line = JSON.parse(record("jsonl", stored[3]!, context))
    line.data.reason = "unknown_api_key"
    const canonical = canonicalText(line.position, line.id, line.stream, line.version, line.workspaceId, line.type, jsonbText(line.data), jsonbText(line.meta), Date.parse(line.recordedAt))
    const hash = createHash("sha256").update(Buffer.from(line.prevHash, "hex")).update(canonical, "utf8").digest("hex")
    assert.notStrictEqual(hash, line.hash)
  })

  for (const format of Formats) {
    it(`${format}: position, event id, prev hash and hash of every record, gap-free and linked`, () => {
      const chain = stored.map((e) => chainOf(format, record(format, e, context)))
      chain.forEach((link, i) => {
        assert.strictEqual(link.position, i + 1)
        assert.strictEqual(link.id, stored[i]!.id)
        assert.match(link.hash, /^[0-9a-f]{64}$/)
        assert.strictEqual(link.prevHash, i === 0 ? "00".repeat(32) : chain[i - 1]!.hash)
      })
    })
  }
})
