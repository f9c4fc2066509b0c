/**
 * The pure part of an append, shared by every `EventLog` so that they chain alike: a request checked and encoded once,
 * then its expected version checked against where the chain stands (a `Cursor`) and its events given positions, stream
 * versions and chain hashes. Nothing here reads or writes a store.
 */
import { Either, Schema } from "effect"
import { type AppendOptions, type AppendResult, EventLogError, type ExpectedVersion, type StoredEvent, VersionConflict } from "./EventLog.ts"
import { encodeEvent, type Event, EventMeta } from "./Events.ts"
import { GENESIS_HASH, hashEnvelope, jsonbText, NotCanonical } from "./HashChain.ts"

/**
 * Where the chain stands while a batch is prepared: the last position and its hash, each stream's version (a stream
 * that is absent is at 0), and the one time the whole batch is recorded at (whole milliseconds). `prepare` advances it
 * in place.
 */
export interface Cursor {
  position: number
  prevHash: Uint8Array
  readonly versions: Map<string, number>
  readonly recordedAt: Date
}

/**
 * One append as a batch sees it, encoded (see `encode`) and with its ids drawn. The fields are named as in the
 * Postgres writer's queued request, so that one can be passed as is.
 */
export interface Request {
  readonly stream: string
  readonly expected: ExpectedVersion
  /** One id per event. */
  readonly ids: ReadonlyArray<string>
  readonly types: ReadonlyArray<string>
  /** Each event's payload as jsonb text (what the hash covers). */
  readonly dataJson: ReadonlyArray<string>
  readonly metaJson: string
  readonly workspaceId: string | null
  /** The events themselves, handed on in the stored events (inline projections read them undecoded). */
  readonly events: ReadonlyArray<Event>
  readonly meta: EventMeta
}

/** What `encode` makes of a request's events and metadata. */
export interface Encoded {
  readonly types: ReadonlyArray<string>
  readonly dataJson: ReadonlyArray<string>
  readonly metaJson: string
}

const encodeMeta = Schema.encodeSync(EventMeta)

/**
 * Postgres's uuid columns store the lowercase hyphenated form: an id spelt otherwise would not hash as stored. (What
 * `Schema.UUID` accepts, lower case only, as one regular expression: through `Schema.is` it cost more than the rest of
 * the check.)
 */
const isStoredUuid = (id: string) => STORED_UUID.test(id)

const STORED_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/**
 * The jsonb text of each metadata value already encoded, by identity: a caller often appends with the same `EventMeta`
 * (a session's, a connection's) many times, and each time it went through the schema encoder and `jsonbText` again.
 * `EventMeta` is an immutable schema class, so the text of one instance never changes; anything else is encoded each time.
 */
const metaTexts = new WeakMap<EventMeta, string>()

const metaText = (meta: EventMeta): string => {
  if (!(meta instanceof EventMeta)) return jsonbText(encodeMeta(meta))
  let text = metaTexts.get(meta)
  if (text === undefined) {
    text = jsonbText(encodeMeta(meta))
    metaTexts.set(meta, text)
  }
  return text
}

/**
 * Checks and encodes a request before it joins a batch, so that one refused here fails alone: no events, a stream name
 * with U+0000, ids not one per event, an id or workspace id that is not a lowercase UUID, or a payload without exact
 * jsonb text are refused (`Rejected`).
 */
export const encode = (
  stream: string,
  events: ReadonlyArray<Event>,
  options: AppendOptions
): Either.Either<Encoded, EventLogError> => {
  const refuse = (message: string) => Either.left(new EventLogError({ reason: "Rejected", message }))
  if (events.length === 0) return refuse(`append to ${stream} with no events`)
  if (stream.includes("\u0000")) return refuse("a stream name cannot contain U+0000")
  if (options.ids !== undefined && options.ids.length !== events.length) {
    return refuse(`append to ${stream}: ${options.ids.length} ids for ${events.length} events`)
  }
  const notUuid = [...(options.ids ?? []), ...(options.workspaceId === null ? [] : [options.workspaceId])]
    .find((id) => !isStoredUuid(id))
  if (notUuid !== undefined) return refuse(`append to ${stream}: ${JSON.stringify(notUuid)} is not a lowercase UUID`)
  const types: Array<string> = []
  const dataJson: Array<string> = []
  try {
    for (const event of events) {
      const encoded = encodeEvent(event)
      types.push(encoded.type)
      dataJson.push(jsonbText(encoded.data))
    }
    return Either.right({ types, dataJson, metaJson: metaText(options.meta) })
  } catch (error) {
    if (error instanceof NotCanonical) return refuse(`append to ${stream} refused: ${error.message}`)
    throw error
  }
}

/** A cursor at a head (position 0 and the genesis hash for an empty log), with the versions of the streams it knows. */
export const cursorAt = (
  head: { readonly position: number; readonly hash: Uint8Array },
  versions: Iterable<readonly [string, number]>,
  recordedAt: Date
): Cursor => ({ position: head.position, prevHash: head.hash, versions: new Map(versions), recordedAt })

/**
 * Checks a request's expected version against the cursor and, if it holds, gives its events the next positions,
 * versions and chain hashes, advancing the cursor in place (it is left as it was on a conflict). Nothing is written.
 */
export const prepare = (cursor: Cursor, request: Request): Either.Either<ReadonlyArray<StoredEvent>, VersionConflict> => {
  const { expected, stream } = request
  const current = cursor.versions.get(stream) ?? 0
  const ok = expected === "any" || (expected === "no_stream" ? current === 0 : expected === current)
  if (!ok) return Either.left(new VersionConflict({ stream, expected, actual: current }))
  const stored: Array<StoredEvent> = []
  for (let i = 0; i < request.types.length; i++) {
    // One object per event, hashed as it is built (no envelope copied into a second object).
    const event: { -readonly [K in keyof StoredEvent]: StoredEvent[K] } = {
      position: cursor.position + 1,
      id: request.ids[i]!,
      stream,
      version: current + i + 1,
      workspaceId: request.workspaceId,
      type: request.types[i]!,
      dataJson: request.dataJson[i]!,
      metaJson: request.metaJson,
      recordedAt: cursor.recordedAt,
      prevHash: cursor.prevHash,
      event: request.events[i]!,
      meta: request.meta,
      hash: GENESIS_HASH
    }
    event.hash = hashEnvelope(event)
    stored.push(event)
    cursor.position = event.position
    cursor.prevHash = event.hash
  }
  cursor.versions.set(stream, current + request.types.length)
  return Either.right(stored)
}

/**
 * Moves the cursor back to where it stood before `prepare` gave it `stored`, the last events it prepared: for a store
 * that then fails to write them alone (the Postgres writer's request rolled back to its savepoint).
 */
export const rewind = (cursor: Cursor, stored: ReadonlyArray<StoredEvent>): void => {
  const first = stored[0]
  if (first === undefined) return
  cursor.position = first.position - 1
  cursor.prevHash = first.prevHash
  cursor.versions.set(first.stream, first.version - 1)
}

/** What an append that stored `stored` (one request's events, in order) answers. */
export const resultOf = (stored: ReadonlyArray<StoredEvent>): AppendResult => ({
  firstPosition: stored[0]!.position,
  lastPosition: stored[stored.length - 1]!.position,
  version: stored[stored.length - 1]!.version
})
