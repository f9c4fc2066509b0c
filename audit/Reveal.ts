/**
 * Who receives client addresses in full from the audit API: an operator key (the hub's operator, who holds the log
 * itself), and only it. A workspace key is answered with every address masked (core/Mask.ts: IPv4 to its /24, IPv6 to
 * its /48) in events, tails, stats and access answers, whatever it asks (`reveal=true` included): the masking is the
 * hub's, so no edited request and no client can undo it. The CLI and the console mask an operator's answer for
 * display unless asked to reveal.
 */
import type * as HubApi from "../core/HubApi.ts"
import { maskData, maskMeta } from "../core/Mask.ts"
import type { Cidr } from "./Query.ts"

/** Whether `caller` may receive addresses in full. */
export const mayReveal = (caller: HubApi.ApiKeyCaller["Type"]): boolean => caller.scope === "operator"

/** `event` as `caller` may receive it: as stored, or with its addresses masked. */
export const shown = (caller: HubApi.ApiKeyCaller["Type"], event: HubApi.AuditEvent): HubApi.AuditEvent =>
  mayReveal(caller) ? event : { ...event, data: maskData(event.data), meta: maskMeta(event.meta) }

/**
 * Why `caller` may not filter by `ip`, or undefined: a key that is shown addresses masked filters by no narrower a
 * prefix than the mask, or a filter would tell it what the mask hides (a /25, /26 … /32 in turn: 8 requests an address).
 */
export const ipFilterRefusal = (caller: HubApi.ApiKeyCaller["Type"], ip: Cidr | undefined): string | undefined =>
  ip === undefined || mayReveal(caller) || ip.bits <= (ip.family === "ipv4" ? 24 : 48)
    ? undefined
    : "ip: this API key is shown addresses masked to their /24 (IPv6: /48), so it filters by such a prefix at most " +
      "(e.g. 203.0.113.0/24 or 203.0.113.x)"
