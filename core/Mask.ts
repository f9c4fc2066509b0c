/**
 * Masking of client addresses in everything a person reads (the audit CLI, the hub's listings and its operational
 * log, the agent's lines): an IPv4 address keeps its /24 (`203.0.113.x`), an IPv6 address its /48
 * (`2001:db8:85a3::/48`). The event log keeps full addresses; the CLIs show them only with --reveal-ips.
 */
import * as Net from "node:net"

/** Shown for a recorded address that is not an IP address (the log records what the hub saw, unchecked). */
export const NOT_AN_ADDRESS = "(not an address)"

/** The eight 16-bit groups of an IPv6 address in text form (valid per `net.isIPv6`). */
const groupsOf = (address: string): Array<number> => {
  let text = address.split("%")[0]!
  // A trailing dotted IPv4 (::ffff:1.2.3.4) is two groups.
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text)
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number]
    text = text.slice(0, dotted.index) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head, tail] = text.includes("::") ? text.split("::") as [string, string] : [text, undefined]
  const parse = (part: string) => (part === "" ? [] : part.split(":").map((g) => parseInt(g, 16)))
  const left = parse(head)
  const right = tail === undefined ? [] : parse(tail)
  return [...left, ...Array(8 - left.length - right.length).fill(0), ...right]
}

/** An address masked already (`203.0.113.x`, `::ffff:203.0.113.x`, `2001:db8:85a3::/48`), or the mark of a non-address. */
const MASKED = /^(?:(?:::ffff:)?\d{1,3}\.\d{1,3}\.\d{1,3}\.x|[0-9a-f]{1,4}:[0-9a-f]{1,4}:[0-9a-f]{1,4}::\/48|\(not an address\))$/

/**
 * `address` masked: IPv4 to its /24, IPv4-mapped IPv6 likewise, IPv6 to its /48; anything else to {@link NOT_AN_ADDRESS}.
 * A masked address stays as it is: the hub masks what a workspace key reads, and the CLI masks what it prints again.
 */
export const maskIp = (address: string): string => {
  if (MASKED.test(address)) return address
  if (Net.isIPv4(address)) return address.replace(/\.\d+$/, ".x")
  if (!Net.isIPv6(address)) return NOT_AN_ADDRESS
  const mapped = /^::ffff:(\d+\.\d+\.\d+)\.\d+$/i.exec(address)
  if (mapped) return `::ffff:${mapped[1]}.x`
  const groups = groupsOf(address)
  return `${groups.slice(0, 3).map((g) => g.toString(16)).join(":")}::/48`
}

/** The fields of an event's `data` and `meta` that hold an address. */
const DATA_ADDRESS_FIELDS = ["ip", "previousIp", "newIp"] as const

/** A copy of `data` with every address field masked (other fields as they are). */
export const maskData = (data: unknown): unknown => {
  if (typeof data !== "object" || data === null || Array.isArray(data)) return data
  const fields = data as Record<string, unknown>
  const out: Record<string, unknown> = { ...fields }
  for (const key of DATA_ADDRESS_FIELDS) if (typeof fields[key] === "string") out[key] = maskIp(fields[key])
  return out
}

/** A copy of `meta` with `sourceIp` masked. */
export const maskMeta = (meta: unknown): unknown => {
  if (typeof meta !== "object" || meta === null || Array.isArray(meta)) return meta
  const fields = meta as Record<string, unknown>
  return typeof fields.sourceIp === "string" ? { ...fields, sourceIp: maskIp(fields.sourceIp) } : meta
}

/**
 * A peer as a socket names it (`203.0.113.7:51234`, `[2001:db8::1]:443`, a bare address, or `memory`/`unknown`) with
 * its address masked and its port dropped (a client's source port says nothing an operator needs, and pins it).
 */
export const maskPeer = (peer: string): string => {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(peer)
  if (bracketed) return maskIp(bracketed[1]!)
  if (Net.isIP(peer) !== 0) return maskIp(peer)
  const v4 = /^(\d+\.\d+\.\d+\.\d+):\d+$/.exec(peer)
  if (v4) return maskIp(v4[1]!)
  return /^[a-z]+$/.test(peer) ? peer : NOT_AN_ADDRESS
}

/** `address` masked, or as it is with `reveal` (--reveal-ips); `undefined`/`null` stay as they are. */
export const showIp = <A extends string | null | undefined>(address: A, reveal: boolean): A | string =>
  typeof address === "string" && !reveal ? maskIp(address) : address
