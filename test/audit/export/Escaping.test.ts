/**
 * Hostile values in every place a peer or an operator can put text (stream names, payload strings, payload keys,
 * metadata, the type of an unknown event) must come out escaped as each format's spec says, parse back to the same
 * value (or to the documented replacement where a format cannot carry it), and never break or forge a record.
 */
import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import { type StoredEvent, UnknownEvent } from "../../../core/EventLog.ts"
import { decodeEventEither, EventMeta } from "../../../core/Events.ts"
import * as Cef from "../../../audit/export/Cef.ts"
import { Formats, record, syslogRecord } from "../../../audit/export/Format.ts"
import { storedJson, toAscii } from "../../../audit/export/Json.ts"
import * as Syslog from "../../../audit/export/Syslog.ts"
import { parse5424, parseCef, unframe } from "./Parsers.ts"

const context = { productVersion: "0.1.0", hostname: "exporter.example" }

/** The hostile values, by name. */
const hostile: Record<string, string> = {
  quote: 'say "hi"',
  bracket: "a]b]",
  pipe: "a|b||",
  equals: "a=b==",
  backslash: "a\\b\\",
  backslashBeforePipe: "\\|",
  backslashBeforeEquals: "\\=",
  backslashBeforeBracket: "\\]",
  newline: "a\nb",
  crlf: "a\r\nb\r",
  tab: "a\tb",
  nul: "a\u0000b",
  controls: "\u0001\u001b[31m\u007f",
  loneHigh: "a\ud800b",
  loneLow: "a\udc00b",
  surrogatePair: "a😀b",
  nonAscii: "Zürich ☃",
  sdForgery: 'x" hash="forged"] [connect@32473 hash="forged',
  cefForgery: "x cs1=forged act=forged",
  oneMegabyte: ('"]|=\\\n\r\u0000x' + "y".repeat(1016)).repeat(1024)
}

const HASH = Buffer.alloc(32, 0xcd)
const PREV = Buffer.alloc(32, 0xab)

/** A stored event as a reader would pass it on, built without the chain (jsonb could not even store U+0000). */
const storedEvent = (type: string, data: Record<string, unknown>, stream: string, value: string): StoredEvent => {
  const meta = { actor: { kind: "agent", id: value }, userAgent: value, hubId: value, correlationId: value }
  const decoded = decodeEventEither(type, data)
  return {
    position: 42,
    id: "01956b3e-8a00-7c00-9000-00000000002a",
    stream,
    version: 3,
    workspaceId: "01956b3e-8a00-7c00-8000-0000000000a1",
    type,
    dataJson: JSON.stringify(data),
    metaJson: JSON.stringify(meta),
    recordedAt: new Date("2025-03-01T13:00:00.000Z"),
    prevHash: PREV,
    hash: HASH,
    event: Either.isRight(decoded) ? decoded.right : new UnknownEvent({ type, data }),
    meta: new EventMeta(meta as never)
  }
}

/** The events each hostile value goes into: a known type with the value in payload and meta, and an unknown type. */
const eventsWith = (value: string) => [
  storedEvent("AgentTokenRevoked", { agentId: "01956b3e-8a00-7c00-8000-0000000000b1", reason: value }, `agent-${value}`, value),
  storedEvent(value, { [value]: value, nested: [value, { deep: value }] }, value, value)
]

const lone = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g
/** What CEF can carry of a value: no escape exists for NUL, other controls but TAB/LF/CR, or lone surrogates. */
const cefValue = (v: string) => v.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, "\uFFFD").replace(lone, "\uFFFD")
const cefHeader = (v: string) => cefValue(v).replace(/[\r\n]/g, " ")
/** What an SD-PARAM value can carry of a value: no control characters, no lone surrogates. */
const sdValue = (v: string) => v.replace(/[\u0000-\u001f\u007f]/g, "\uFFFD").replace(lone, "\uFFFD")

const assertOneLine = (line: string) => {
  assert.isFalse(/[\r\n]/.test(line), "a record holds a raw line break")
}

const hex = (b: Buffer) => b.toString("hex")

describe("escaping", () => {
  for (const [name, value] of Object.entries(hostile)) {
    describe(name, () => {
      const [known, unknown] = eventsWith(value)

      it("jsonl: one line, every value back exactly", { timeout: 300_000 }, () => {
        for (const e of [known!, unknown!]) {
          const line = record("jsonl", e, context)
          assertOneLine(line)
          const parsed = JSON.parse(line)
          assert.strictEqual(parsed.stream, e.stream)
          assert.strictEqual(parsed.type, e.type)
          assert.deepStrictEqual(parsed.data, JSON.parse(e.dataJson))
          assert.strictEqual(parsed.meta.userAgent, value)
          assert.strictEqual(parsed.hash, hex(HASH))
          assert.strictEqual(parsed.prevHash, hex(PREV))
        }
      })

      it("ecs: one line, every value back exactly", { timeout: 300_000 }, () => {
        for (const e of [known!, unknown!]) {
          const line = record("ecs", e, context)
          assertOneLine(line)
          const doc = JSON.parse(line)
          assert.strictEqual(doc.event.id, e.id)
          assert.strictEqual(doc.event.sequence, 42)
          assert.strictEqual(doc.event.hash, hex(HASH))
          assert.strictEqual(doc.event.action, e.type)
          assert.strictEqual(doc.connect.prev_hash, hex(PREV))
          assert.strictEqual(doc.connect.stream, e.stream)
          assert.deepStrictEqual(doc.connect.data, JSON.parse(e.dataJson))
          assert.strictEqual(doc.user_agent.original, value)
          assert.isUndefined(doc.source?.ip, "a value that is not an address never lands in an ip field")
        }
        assert.strictEqual(JSON.parse(record("ecs", known!, context)).event.reason, value)
      })

      it("ocsf: one line, every value back exactly", { timeout: 300_000 }, () => {
        for (const e of [known!, unknown!]) {
          const line = record("ocsf", e, context)
          assertOneLine(line)
          const event = JSON.parse(line)
          assert.strictEqual(event.metadata.uid, e.id)
          assert.strictEqual(event.metadata.sequence, 42)
          assert.strictEqual(event.metadata.correlation_uid, value)
          assert.strictEqual(event.unmapped.connect.hash, hex(HASH))
          assert.strictEqual(event.unmapped.connect.prev_hash, hex(PREV))
          assert.strictEqual(event.unmapped.connect.stream, e.stream)
          assert.deepStrictEqual(event.unmapped.connect.data, JSON.parse(e.dataJson))
          assert.strictEqual(event.type_uid, event.class_uid * 100 + event.activity_id)
        }
        assert.strictEqual(JSON.parse(record("ocsf", known!, context)).status_detail, value)
        assert.strictEqual(JSON.parse(record("ocsf", unknown!, context)).activity_name, value)
      })

      it("cef: one line, seven header fields, no forged key, values back as CEF can carry them", { timeout: 300_000 }, () => {
        for (const e of [known!, unknown!]) {
          const line = record("cef", e, context)
          assertOneLine(line)
          const { header, extension } = parseCef(line)
          assert.deepStrictEqual(header.slice(0, 3), ["CEF:0", "connect", "connect"])
          assert.strictEqual(header[4], cefHeader(e.type))
          assert.strictEqual(extension.externalId, e.id)
          assert.strictEqual(extension.cn1, "42")
          assert.strictEqual(extension.cs1, hex(HASH))
          assert.strictEqual(extension.cs2, hex(PREV))
          assert.strictEqual(extension.cs3, cefValue(e.stream))
          assert.strictEqual(extension.act, cefValue(e.type))
          assert.strictEqual(extension.requestClientApplication, cefValue(value))
          // The payload is JSON, whose own escapes survive CEF: the exact value comes back.
          assert.deepStrictEqual(JSON.parse(extension.cs6!), JSON.parse(e.dataJson))
        }
        assert.strictEqual(parseCef(record("cef", known!, context)).extension.reason, cefValue(value))
      })

      it("syslog: one RFC 5424 message, the chain in its structured data, the event back exactly from MSG", { timeout: 300_000 }, () => {
        for (const e of [known!, unknown!]) {
          const message = record("syslog", e, context)
          assertOneLine(message)
          const parsed = parse5424(message)
          assert.strictEqual(parsed.version, 1)
          assert.strictEqual(parsed.msgId, e.type.replace(/[^\x21-\x7e]/g, "_").slice(0, 32) || "-")
          assert.strictEqual(parsed.sd.length, 2)
          const params = parsed.sd[0]!.params
          assert.strictEqual(parsed.sd[0]!.id, "connect@32473")
          assert.strictEqual(params.position, "42")
          assert.strictEqual(params.id, e.id)
          assert.strictEqual(params.hash, hex(HASH))
          assert.strictEqual(params.prevHash, hex(PREV))
          assert.strictEqual(params.stream, sdValue(e.stream))
          assert.strictEqual(params.type, sdValue(e.type))
          assert.strictEqual(params.hub, sdValue(value))
          assert.isTrue(/^[\x20-\x7e]*$/.test(parsed.msg), "MSG is plain ASCII (no BOM needed)")
          const json = JSON.parse(parsed.msg)
          assert.deepStrictEqual(json.data, JSON.parse(e.dataJson))
          assert.strictEqual(json.stream, e.stream)
        }
      })

      it("every format as a syslog message: the body parses back from MSG", { timeout: 300_000 }, () => {
        for (const e of [known!, unknown!]) {
          for (const format of Formats) {
            const message = syslogRecord(format, e, context)
            assertOneLine(message)
            const parsed = parse5424(unframe(Syslog.frame(message))[0]!)
            assert.strictEqual(parsed.sd[0]!.params.hash, hex(HASH))
            if (format === "cef") {
              assert.strictEqual(parseCef(parsed.msg).extension.cs1, hex(HASH))
            } else {
              const body = JSON.parse(parsed.msg)
              assert.strictEqual(body.id ?? body.event?.id ?? body.metadata?.uid, e.id)
            }
          }
        }
      })
    })
  }

  it("a 1 MB value is formatted in linear time: about 0.1 s per record, under 10 s even on a loaded machine", () => {
    const [known] = eventsWith(hostile.oneMegabyte!)
    for (const format of Formats) {
      const start = performance.now()
      record(format, known!, context)
      assert.isBelow(performance.now() - start, 10_000, format)
    }
  })
})

describe("the escape functions, as the specs write them", () => {
  it("CEF header: backslash and pipe escaped, line breaks become spaces", () => {
    assert.strictEqual(Cef.escapeHeader("a|b\\c\r\nd"), "a\\|b\\\\c  d")
  })

  it("CEF extension: backslash and equals escaped, line breaks as \\n and \\r, pipes left alone", () => {
    assert.strictEqual(Cef.escapeValue("a=b\\c\nd\re|f"), "a\\=b\\\\c\\nd\\re|f")
  })

  it("CEF: what it cannot escape becomes U+FFFD", () => {
    assert.strictEqual(Cef.escapeValue("a\u0000b\ud800"), "a\uFFFDb\uFFFD")
  })

  it("RFC 5424 SD-PARAM value: quote, backslash and right bracket escaped (§6.3.3)", () => {
    assert.strictEqual(Syslog.escapeParamValue('a"b\\c]d'), 'a\\"b\\\\c\\]d')
    assert.strictEqual(Syslog.escapeParamValue("a\nb\u0000"), "a\uFFFDb\uFFFD")
  })

  it("octet counting counts UTF-8 bytes, not characters", () => {
    assert.strictEqual(Syslog.frame("<110>1 - - - - - - héllo ☃").toString("utf8"), "29 <110>1 - - - - - - héllo ☃")
    assert.deepStrictEqual(unframe(Buffer.concat([Syslog.frame("a b"), Syslog.frame("ü")])), ["a b", "ü"])
  })

  it("ASCII JSON escapes every character past DEL and still parses to the same value", () => {
    const value = { s: "Zürich ☃ 😀 \u007f \u2028" }
    const ascii = toAscii(JSON.stringify(value))
    assert.isTrue(/^[\x20-\x7e]*$/.test(ascii))
    assert.deepStrictEqual(JSON.parse(ascii), value)
  })

  it("stored JSON is spliced verbatim when it can be, re-serialized when it holds raw controls, quoted when it is not JSON", () => {
    assert.strictEqual(storedJson(`{"a": 1, "bb": [1, 2]}`).text, `{"a": 1, "bb": [1, 2]}`)
    assert.strictEqual(storedJson(`{\n"a": 1}`).text, `{"a":1}`)
    assert.strictEqual(storedJson(`{"a": "\ud800"}`).text, `{"a":"\\ud800"}`)
    assert.strictEqual(storedJson(`{"a": `).text, `"{\\"a\\": "`)
  })
})
