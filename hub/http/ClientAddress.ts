/**
 * The address of the client behind a connection: the TCP peer's, or — when the peer is a reverse proxy the operator
 * trusts (`connect hub --trust-proxy CIDR[,CIDR]`) — the nearest address in `X-Forwarded-For` that is not itself a
 * trusted proxy. Without this, every client behind nginx or Caddy would look like 127.0.0.1 to the per-address limits
 * and in the audit log.
 */
import * as Net from "node:net"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"

/** A `--trust-proxy` entry that is not an address or CIDR block. */
export class TrustProxyError extends Schema.TaggedError<TrustProxyError>()("TrustProxyError", {
  message: Schema.String
}) {}

/** Parses `CIDR[,CIDR]` (a bare address means just that address) into normalized blocks such as `10.0.0.0/8`. */
export const parseCidrs = (text: string): Effect.Effect<ReadonlyArray<string>, TrustProxyError> =>
  Effect.forEach(text.split(",").map((s) => s.trim()).filter((s) => s !== ""), (entry) => {
    const [ip = "", bits, ...rest] = entry.split("/")
    const family = Net.isIP(ip)
    const max = family === 4 ? 32 : 128
    const prefix = bits === undefined ? max : /^\d{1,3}$/.test(bits) ? Number(bits) : NaN
    if (family === 0 || rest.length > 0 || !(prefix >= 0 && prefix <= max)) {
      return new TrustProxyError({ message: `--trust-proxy ${entry}: expected an address or CIDR block such as 10.0.0.0/8` })
    }
    return Effect.succeed(`${ip}/${prefix}`)
  })

/** The trusted proxies' blocks, ready to match addresses against. */
export interface TrustedProxies {
  /** True when `ip` (as a socket reports it, IPv4-mapped or not) is in one of the blocks. */
  readonly contains: (ip: string) => boolean
}

/** Trusted proxies from blocks parsed by `parseCidrs` (none: no proxy is trusted). */
export const make = (cidrs: ReadonlyArray<string> = []): TrustedProxies => {
  const list = new Net.BlockList()
  for (const cidr of cidrs) {
    const [ip, bits] = cidr.split("/") as [string, string]
    list.addSubnet(ip, Number(bits), Net.isIP(ip) === 4 ? "ipv4" : "ipv6")
  }
  return {
    contains: (ip) => {
      const family = Net.isIP(ip)
      return cidrs.length > 0 && family !== 0 && list.check(ip, family === 4 ? "ipv4" : "ipv6")
    }
  }
}

/** `ip` without IPv6 brackets, a port, or the `::ffff:` prefix of an IPv4-mapped address. */
export const normalize = (ip: string): string => {
  const bare = /^\[([^\]]+)\](?::\d+)?$/.exec(ip)?.[1] ?? /^(\d+\.\d+\.\d+\.\d+):\d+$/.exec(ip)?.[1] ?? ip
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(bare)?.[1]
  return mapped ?? bare
}

/**
 * The key a per-address limit counts `ip` under: the address itself for IPv4, its /64 for IPv6 — one host is usually
 * given a whole /64, so counting single IPv6 addresses would let it open connections without limit.
 */
export const limitKey = (ip: string): string => {
  const address = normalize(ip)
  if (!address.includes(":")) return address
  const [head = "", tail] = address.split("::")
  const left = head === "" ? [] : head.split(":")
  const right = tail === undefined || tail === "" ? [] : tail.split(":")
  const groups = tail === undefined ? left : [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill("0"), ...right]
  return `${groups.slice(0, 4).map((g) => g.toLowerCase().replace(/^0+(?=.)/, "")).join(":")}::/64`
}

/**
 * The client's IP: `peer` unless it is a trusted proxy; then `X-Forwarded-For` is walked from the right (each proxy
 * appends the address it saw), skipping trusted hops, and the first untrusted address is the client. Entries to the
 * left of it are the client's own claims and are ignored; an entry that is not an address ends the walk at the last
 * hop a trusted proxy vouched for.
 */
export const resolve = (
  trusted: TrustedProxies,
  peer: string | undefined,
  forwardedFor: string | ReadonlyArray<string> | undefined
): string => {
  let client = normalize(peer ?? "unknown")
  if (!trusted.contains(client) || forwardedFor === undefined) return client
  const hops = (typeof forwardedFor === "string" ? forwardedFor : forwardedFor.join(",")).split(",")
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = normalize(hops[i]!.trim())
    if (Net.isIP(hop) === 0) break
    client = hop
    if (!trusted.contains(hop)) break
  }
  return client
}

/** `ip:port` as the relay records a connection's address (`[ip]:port` for IPv6). */
export const withPort = (ip: string, port: number | undefined): string =>
  `${Net.isIPv6(ip) ? `[${ip}]` : ip}:${port ?? 0}`
