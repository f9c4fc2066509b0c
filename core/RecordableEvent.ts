/**
 * The last line before an event is encoded for the log: any string anywhere in an event or its metadata that Postgres
 * would refuse (U+0000, a lone surrogate) becomes U+FFFD, so that no caller, present or future, can make the append
 * of a record fail — or, in a group commit, the whole batch it rides in. Callers still cap and sanitise what a peer
 * sends (core/Text.ts) before building an event; this only guarantees that what reaches the writer is recordable.
 */
import type { Event } from "./Events.ts"
import { EventMeta } from "./Events.ts"
import { replaceUnrecordable } from "./Text.ts"

const isPlainObject = (value: object): boolean => {
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/** `value` with every string in it made recordable; the very same value when nothing had to change. */
const clean = (value: unknown): unknown => {
  if (typeof value === "string") return replaceUnrecordable(value)
  if (Array.isArray(value)) {
    const items = value.map(clean)
    return items.every((item, i) => item === value[i]) ? value : items
  }
  if (value !== null && typeof value === "object" && isPlainObject(value)) {
    const entries = Object.entries(value).map(([k, v]) => [k, clean(v)] as const)
    const same = entries.every(([k, v]) => v === (value as Record<string, unknown>)[k])
    return same ? value : Object.fromEntries(entries)
  }
  return value
}

/** The own fields of a schema class instance, cleaned; undefined when none changed. */
const cleanFields = (instance: object): Record<string, unknown> | undefined => {
  const { _tag: _, ...fields } = instance as Record<string, unknown>
  const cleaned = clean(fields)
  return cleaned === fields ? undefined : (cleaned as Record<string, unknown>)
}

/** `event` with every string field made recordable (the same instance when all already were). */
export const recordableEvent = <E extends Event>(event: E): E => {
  const fields = cleanFields(event)
  if (fields === undefined) return event
  // The fields were valid before and only had code units replaced; no schema refuses U+FFFD, so skip validation.
  const Ctor = event.constructor as new(props: unknown, disableValidation: true) => E
  return new Ctor(fields, true)
}

/** `events`, each made recordable (the same array when all already were). */
export const recordableEvents = <E extends Event>(events: ReadonlyArray<E>): ReadonlyArray<E> => {
  const out = events.map(recordableEvent)
  return out.every((e, i) => e === events[i]) ? events : out
}

/** `meta` with every string made recordable (the same instance when all already were). */
export const recordableMeta = (meta: EventMeta): EventMeta => {
  const fields = cleanFields(meta)
  return fields === undefined ? meta : new EventMeta(fields as unknown as EventMeta, true)
}
