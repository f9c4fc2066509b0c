/**
 * The filters of an audit API request, checked as the CLI checks them and then against the caller: a workspace key
 * names no other workspace (row-level security would answer nothing; the key is told, and the attempt recorded as a
 * refused key is) and no address prefix narrower than its mask (audit/Reveal.ts). Shared by the events and tail reads.
 */
import { Effect } from "effect"
import * as HubApi from "../core/HubApi.ts"
import { parseFilters, type RawFilters } from "./Query.ts"
import * as Reveal from "./Reveal.ts"

/** `raw` parsed (a 400 with the CLI's message, the option named as the query parameter) and checked for `caller`. */
export const checked = (caller: HubApi.ApiKeyCaller["Type"], raw: RawFilters) =>
  Effect.gen(function*() {
    const filters = yield* Effect.mapError(
      parseFilters(raw, new Date()),
      (e) => new HubApi.BadRequest({ message: e.message.replace(/^--/, "") })
    )
    if (caller.scope === "workspace" && filters.workspace !== undefined && filters.workspace !== caller.workspaceId) {
      return yield* caller.outOfScope(`this API key reads its own workspace (${caller.workspaceId}) only`)
    }
    const narrow = Reveal.ipFilterRefusal(caller, filters.ip)
    if (narrow !== undefined) return yield* caller.outOfScope(narrow)
    return filters
  })
