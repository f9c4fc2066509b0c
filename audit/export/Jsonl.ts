/**
 * The `jsonl` export format: one JSON object per line holding every stored column of the event, in table order, with
 * `data` and `meta` spliced in as the very jsonb text the hash chain committed to. A consumer can therefore verify the
 * chain from the export alone: `hash = sha256(prevHash || canonicalText(position, id, stream, version, workspaceId,
 * type, jsonbText(data), jsonbText(meta), Date.parse(recordedAt)))` (core/HashChain.ts).
 */
import type { StoredEvent } from "../../core/EventLog.ts"
import { storedJson, stringify } from "./Json.ts"
import { hex } from "./Summary.ts"

/** The object a line holds, before it is written (also the MSG of a syslog record). */
export const toObject = (stored: StoredEvent): Record<string, unknown> => ({
  position: stored.position,
  id: stored.id,
  stream: stored.stream,
  version: stored.version,
  workspaceId: stored.workspaceId,
  type: stored.type,
  data: storedJson(stored.dataJson),
  meta: storedJson(stored.metaJson),
  recordedAt: stored.recordedAt,
  prevHash: hex(stored.prevHash),
  hash: hex(stored.hash)
})

/** One stored event as one line of JSON, without its line terminator; events of unknown types are copied alike. */
export const format = (stored: StoredEvent): string => stringify(toObject(stored))
