/**
 * What an agent may expose, decided without I/O: a target is a host name (DNS labels, at most 253 characters) or an
 * IP address, and a port in 1-65535; cloud metadata and link-local addresses are refused unless the agent's allow list
 * names them; an agent with an allow list may expose only what is on it. The hub cannot resolve names on the agent's
 * network, so a name is judged as written: numeric forms a resolver would read as an address are refused as names.
 */
import { isIP } from "node:net"
import { Either } from "effect"

/** The longest host name DNS can carry as text (RFC 1035: 255 octets on the wire, 253 characters written out). */
export const MAX_HOST_LENGTH = 253

/** An IP address as a number, IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) folded to IPv4. */
interface Address {
  readonly family: 4 | 6
  readonly value: bigint
}

/** A CIDR range: the addresses whose first `prefix` bits equal `net`'s. */
interface Range extends Address {
  readonly prefix: number
}

/** An entry of an agent's allow list: an address range (an address is a /32 or /128), a name, or `*.domain`. */
export type AllowEntry =
  | { readonly _tag: "Range"; readonly range: Range }
  | { readonly _tag: "Name"; readonly name: string }
  | { readonly _tag: "Domain"; readonly domain: string }

/** A target host, parsed. */
type Host = { readonly _tag: "Address"; readonly address: Address } | { readonly _tag: "Name"; readonly name: string }

const bits = (family: 4 | 6) => (family === 4 ? 32 : 128)

const v4 = (text: string): bigint => text.split(".").reduce((n, part) => (n << 8n) | BigInt(part), 0n)

const v6 = (text: string): bigint => {
  let s = text
  if (s.includes(".")) {
    // An embedded IPv4 tail (`::ffff:1.2.3.4`) is the last two 16-bit groups.
    const at = s.lastIndexOf(":") + 1
    const tail = v4(s.slice(at))
    s = `${s.slice(0, at)}${(tail >> 16n).toString(16)}:${(tail & 0xffffn).toString(16)}`
  }
  const [head, rest] = s.split("::") as [string, string | undefined]
  const before = head === "" ? [] : head.split(":")
  const after = rest === undefined || rest === "" ? [] : rest.split(":")
  const groups = rest === undefined ? before : [...before, ...Array(8 - before.length - after.length).fill("0"), ...after]
  return groups.reduce((n, group) => (n << 16n) | BigInt(`0x${group}`), 0n)
}

const MAPPED = 0xffffn << 32n

/** Parses an IP address in text form; a zone id (`fe80::1%eth0`) is refused: it names an interface, not a host. */
const parseAddress = (text: string): Address | undefined => {
  const family = isIP(text)
  if (family === 0 || text.includes("%")) return undefined
  if (family === 4) return { family: 4, value: v4(text) }
  const value = v6(text)
  return value >> 32n === 0xffffn ? { family: 4, value: value - MAPPED } : { family: 6, value }
}

const inRange = (range: Range, address: Address): boolean => {
  const shift = BigInt(bits(range.family) - range.prefix)
  return range.family === address.family && range.value >> shift === address.value >> shift
}

/** Parses `address` or `address/prefix`; an IPv4-mapped IPv6 range becomes the IPv4 range it covers. */
const parseRange = (text: string): Range | undefined => {
  const [addressText, prefixText, extra] = text.split("/")
  if (extra !== undefined || addressText === undefined) return undefined
  const mapped = isIP(addressText) === 6 && parseAddress(addressText)?.family === 4
  const address = parseAddress(addressText)
  if (address === undefined) return undefined
  const written = prefixText === undefined ? (mapped ? 128 : bits(address.family)) : Number(prefixText)
  const prefix = mapped ? written - 96 : written
  if (!/^\d{1,3}$/.test(prefixText ?? "0") || prefix < 0 || prefix > bits(address.family)) return undefined
  const shift = BigInt(bits(address.family) - prefix)
  return { family: address.family, value: (address.value >> shift) << shift, prefix }
}

const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/
// A last label of digits or 0x-hex makes a resolver read the whole name as an IPv4 address (inet_aton accepts
// `2852039166`, `0xa9fea9fe`, `169.254.43518` and octal parts), so such a name would bypass every address rule.
const NUMERIC = /^(?:\d+|0x[0-9a-f]*)$/

/** A host name as compared: lower case, without the root's trailing dot; undefined if not a valid host name. */
const parseName = (text: string): string | undefined => {
  if (text.length > MAX_HOST_LENGTH) return undefined
  const name = text.toLowerCase().replace(/\.$/, "")
  const labels = name.split(".")
  if (!labels.every((label) => LABEL.test(label))) return undefined
  return NUMERIC.test(labels[labels.length - 1]!) ? undefined : name
}

const parseHost = (text: string): Host | undefined => {
  const address = text.length <= 45 ? parseAddress(text) : undefined
  if (address) return { _tag: "Address", address }
  const name = parseName(text)
  return name === undefined ? undefined : { _tag: "Name", name }
}

/**
 * Cloud metadata services and link-local addresses: a tunnel to one hands out the exposing machine's cloud
 * credentials. 169.254.169.254 (AWS, GCP, Azure, OpenStack, DigitalOcean) and 169.254.170.2 (ECS) are link-local;
 * fd00:ec2::254 is AWS's IPv6 endpoint; 100.100.100.200 is Alibaba Cloud's.
 */
const METADATA_RANGES: ReadonlyArray<Range> = ["169.254.0.0/16", "100.100.100.200/32", "fe80::/10", "fd00:ec2::254/128"]
  .map((r) => parseRange(r)!)

/** Names of metadata services, refused like their addresses. */
const METADATA_NAMES: ReadonlySet<string> = new Set([
  "metadata",
  "metadata.google.internal",
  "metadata.goog",
  "instance-data",
  "instance-data.ec2.internal"
])

/** Parses one allow-list entry: `10.0.0.0/8`, `192.168.1.5`, `fd12::/16`, `db.internal` or `*.svc.cluster.local`. */
export const parseAllowEntry = (text: string): Either.Either<AllowEntry, string> => {
  const entry = text.trim()
  if (entry.includes("/") || isIP(entry) !== 0) {
    const range = parseRange(entry)
    return range ? Either.right({ _tag: "Range", range }) : Either.left(`"${preview(entry)}" is not an address or CIDR range`)
  }
  const domain = entry.startsWith("*.") ? parseName(entry.slice(2)) : undefined
  if (domain !== undefined) return Either.right({ _tag: "Domain", domain })
  const name = parseName(entry)
  return name === undefined
    ? Either.left(`"${preview(entry)}" is not an address, a CIDR range, a host name or *.domain`)
    : Either.right({ _tag: "Name", name })
}

/** Whether an allow-list entry admits a host. */
const admits = (entry: AllowEntry, host: Host): boolean => {
  if (host._tag === "Address") return entry._tag === "Range" && inRange(entry.range, host.address)
  if (entry._tag === "Name") return entry.name === host.name
  return entry._tag === "Domain" && host.name.endsWith(`.${entry.domain}`)
}

/** Whether an entry names a metadata host explicitly: the name itself, or a range inside a metadata range. */
const namesMetadata = (entry: AllowEntry, host: Host): boolean => {
  if (!admits(entry, host)) return false
  if (entry._tag !== "Range") return entry._tag === "Name"
  return METADATA_RANGES.some((m) => inRange(m, entry.range) && entry.range.prefix >= m.prefix)
}

const isMetadata = (host: Host): boolean =>
  host._tag === "Address" ? METADATA_RANGES.some((m) => inRange(m, host.address)) : METADATA_NAMES.has(host.name)

/** At most 64 characters of peer-supplied text, JSON-escaped, for an error message. */
const preview = (text: string): string => {
  const json = JSON.stringify(text.length > 64 ? `${text.slice(0, 64)}…` : text)
  return json.slice(1, -1)
}

/** Why `host:port` may not be exposed by an agent with allow list `allow` (none: anything but metadata), if it may not. */
export const refusal = (
  agentId: string,
  host: string,
  port: number,
  allow: ReadonlyArray<string> | undefined
): string | undefined => {
  if (!Number.isInteger(port) || port < 1 || port > 65535) return `the target port must be an integer in 1-65535, got ${port}`
  const parsed = parseHost(host)
  if (parsed === undefined) {
    return `the target host must be a host name (DNS labels, at most ${MAX_HOST_LENGTH} characters, not all digits) ` +
      `or an IP address, got "${preview(host)}"`
  }
  const entries = (allow ?? []).flatMap((text) => Either.getOrElse(Either.map(parseAllowEntry(text), (e) => [e]), () => []))
  const fix = `an admin can allow it: connect hub agent allow ${agentId} --allow LIST`
  if (isMetadata(parsed) && !entries.some((entry) => namesMetadata(entry, parsed))) {
    return `${host} is a cloud metadata or link-local address and is not exposed unless named on the agent's allow list; ${fix}`
  }
  if (allow !== undefined && !entries.some((entry) => admits(entry, parsed))) {
    return `${host} is not on this agent's allow list (${allow.join(",")}); ${fix}`
  }
  return undefined
}
