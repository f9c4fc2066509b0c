/**
 * Independent readers of what the exporters write, written from the specs rather than from the formatters: a CEF
 * line, an RFC 5424 message and an octet-counted stream. Tests parse records back with them to show that escaping
 * round-trips and that no value can break a record.
 */

/** A CEF line: its seven header fields and its extension, unescaped. */
export interface Cef {
  readonly header: ReadonlyArray<string>
  readonly extension: Readonly<Record<string, string>>
}

/** Reads a CEF line: header fields split on unescaped `|` (`\|`, `\\`), extension keys at unescaped `=`. */
export const parseCef = (line: string): Cef => {
  const header: Array<string> = []
  // A header field: anything but `|`, `\` and line breaks, or the escapes `\|` and `\\`; then the separating `|`.
  const field = /((?:[^|\\\r\n]|\\[\\|])*)\|/y
  let i = 0
  while (header.length < 7) {
    field.lastIndex = i
    const match = field.exec(line)
    if (match === null) throw new Error(`CEF header field ${header.length + 1} is malformed: ${line.slice(i, i + 200)}`)
    header.push(match[1]!.replace(/\\([\\|])/g, "$1"))
    i = field.lastIndex
  }
  const ext = line.slice(i)
  if (/[\r\n]/.test(ext)) throw new Error("raw newline in a CEF extension")
  // Every `=` of a value is escaped, so each unescaped `=` ends a key: the word before it, after a space.
  const keys: Array<{ key: string; start: number; valueStart: number }> = []
  for (let j = 0; j < ext.length; j++) {
    if (ext[j] === "\\") {
      j++
      continue
    }
    if (ext[j] === "=") {
      let start = j
      while (start > 0 && /[A-Za-z0-9_]/.test(ext[start - 1]!)) start--
      if (start === j || (start > 0 && ext[start - 1] !== " ")) {
        throw new Error(`unescaped '=' without a key at ${j}: ${ext.slice(Math.max(0, j - 40), j + 40)}`)
      }
      keys.push({ key: ext.slice(start, j), start, valueStart: j + 1 })
    }
  }
  const extension: Record<string, string> = {}
  keys.forEach((k, n) => {
    const end = n + 1 < keys.length ? keys[n + 1]!.start - 1 : ext.length
    const raw = ext.slice(k.valueStart, end)
    if (k.key in extension) throw new Error(`key ${k.key} twice`)
    extension[k.key] = raw.replace(/\\([\\=nr])/g, (_, c: string) => (c === "n" ? "\n" : c === "r" ? "\r" : c))
  })
  return { header, extension }
}

/** An RFC 5424 message, its SD-PARAM values unescaped. */
export interface Rfc5424 {
  readonly pri: number
  readonly version: number
  readonly timestamp: string
  readonly hostname: string
  readonly appName: string
  readonly procId: string
  readonly msgId: string
  readonly sd: ReadonlyArray<{ readonly id: string; readonly params: Readonly<Record<string, string>> }>
  readonly msg: string
}

/** Reads an RFC 5424 message (§6): header, structured data with `\"`, `\\`, `\]` escapes, MSG (BOM removed). */
export const parse5424 = (message: string): Rfc5424 => {
  const head = /^<(\d{1,3})>(\d{1,2}) (\S+) (\S+) (\S+) (\S+) (\S+) /.exec(message)
  if (head === null) throw new Error(`not an RFC 5424 header: ${message.slice(0, 200)}`)
  for (const field of head.slice(3, 8)) {
    if (!/^[\x21-\x7e]+$/.test(field)) throw new Error(`header field is not printable ASCII: ${field}`)
  }
  let i = head[0].length
  const sd: Array<{ id: string; params: Record<string, string> }> = []
  if (message[i] === "-") {
    i++
  } else {
    while (message[i] === "[") {
      i++
      const id = /^[^ =\]"]{1,32}/.exec(message.slice(i))
      if (id === null) throw new Error(`bad SD-ID at ${i}`)
      i += id[0].length
      const params: Record<string, string> = {}
      while (message[i] === " ") {
        i++
        const name = /^([^ =\]"]{1,32})="/.exec(message.slice(i))
        if (name === null) throw new Error(`bad SD-PARAM at ${i}: ${message.slice(i, i + 60)}`)
        i += name[0].length
        const parts: Array<string> = []
        const special = /["\\\]]/g
        for (;;) {
          special.lastIndex = i
          const found = special.exec(message)
          if (found === null) throw new Error("message ends inside an SD-PARAM value")
          parts.push(message.slice(i, found.index))
          i = found.index
          const c = message[i]
          const next = message[i + 1]
          if (c === "\\" && (next === '"' || next === "\\" || next === "]")) {
            parts.push(next)
            i += 2
          } else if (c === "\\") {
            // An invalid escape: the backslash is an ordinary character (§6.3.3).
            parts.push(c)
            i++
          } else if (c === '"') {
            i++
            break
          } else {
            throw new Error(`unescaped ']' inside an SD-PARAM value at ${i}`)
          }
        }
        const value = parts.join("")
        params[name[1]!] = value
      }
      if (message[i] !== "]") throw new Error(`SD-ELEMENT not closed at ${i}: ${message.slice(i, i + 40)}`)
      i++
      sd.push({ id: id[0], params })
    }
  }
  let msg = ""
  if (i < message.length) {
    if (message[i] !== " ") throw new Error(`no space before MSG at ${i}`)
    msg = message.slice(i + 1)
    if (msg.startsWith("\uFEFF")) msg = msg.slice(1)
  }
  return {
    pri: Number(head[1]),
    version: Number(head[2]),
    timestamp: head[3]!,
    hostname: head[4]!,
    appName: head[5]!,
    procId: head[6]!,
    msgId: head[7]!,
    sd,
    msg
  }
}

/** Splits an octet-counted stream (RFC 6587 §3.4.1) into its messages; fails on anything else. */
export const unframe = (bytes: Buffer): Array<string> => {
  const out: Array<string> = []
  let i = 0
  while (i < bytes.length) {
    const space = bytes.indexOf(0x20, i)
    const length = bytes.subarray(i, space).toString("latin1")
    if (space < 0 || !/^[1-9][0-9]*$/.test(length)) throw new Error(`no frame length at byte ${i}`)
    const end = space + 1 + Number(length)
    if (end > bytes.length) throw new Error(`frame at byte ${i} runs past the end`)
    out.push(bytes.subarray(space + 1, end).toString("utf8"))
    i = end
  }
  return out
}
