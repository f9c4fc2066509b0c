/**
 * The hub's stable identity: a UUIDv7 drawn once per data directory and kept in `<dataDir>/hub-id` (0600), recorded in
 * the meta of every event the hub appends, so that hubs sharing one database each know which tunnels and connections
 * in the log are theirs (a restarted hub closes only what it left open itself).
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { Effect, Schema } from "effect"
import { EventLog } from "../../core/EventLog.ts"
import { EventMeta } from "../../core/Events.ts"
import { uuidv7 } from "../../core/Ids.ts"

/** The hub id file could not be read or created, or does not hold a UUID. */
export class HubIdError extends Schema.TaggedError<HubIdError>()("HubIdError", {
  path: Schema.String,
  message: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {}

// A UUID in lower case, as `uuidv7` writes it (the file is never rewritten, so another spelling is not ours).
const isHubId = (id: string) => Schema.is(Schema.UUID)(id) && id === id.toLowerCase()

/** Name of the file in the data directory. */
export const FILE = "hub-id"

const fsync = (path: string) => {
  const fd = Fs.openSync(path, "r")
  try {
    Fs.fsyncSync(fd)
  } finally {
    Fs.closeSync(fd)
  }
}

/**
 * Creates `file` holding a fresh id unless it exists: written to a temporary file, fsynced, then hard-linked into
 * place, which fails if another process got there first (so two hubs starting at once agree on one id).
 */
const createOnce = (dataDir: string, file: string) => {
  const tmp = `${file}.${process.pid}.tmp`
  Fs.writeFileSync(tmp, `${uuidv7()}\n`, { mode: 0o600 })
  fsync(tmp)
  try {
    Fs.linkSync(tmp, file)
    fsync(dataDir)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e
  } finally {
    Fs.rmSync(tmp, { force: true })
  }
}

/** Reads the hub id of `dataDir`, creating it on the first start. */
export const load = (dataDir: string): Effect.Effect<string, HubIdError> => {
  const path = Path.join(dataDir, FILE)
  return Effect.try({
    try: () => {
      Fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 })
      if (!Fs.existsSync(path)) createOnce(dataDir, path)
      return Fs.readFileSync(path, "utf8").trim()
    },
    catch: (cause) => new HubIdError({ path, message: `cannot read or create the hub id at ${path}`, cause })
  }).pipe(
    Effect.filterOrFail(
      isHubId,
      (id) => new HubIdError({ path, message: `${path} does not hold a hub id (a UUID): ${JSON.stringify(id.slice(0, 40))}` })
    )
  )
}

/** `meta` with the hub id, unless it already names one (an event spooled by this hub keeps what it was given). */
export const stampMeta = (meta: EventMeta, hubId: string): EventMeta =>
  meta.hubId === undefined ? new EventMeta({ ...meta, hubId }) : meta

/**
 * The event log with every append's meta stamped with `hubId`. The stamped meta is kept per meta given (by identity:
 * EventMeta is immutable), so a caller appending many times with one meta (a session's, a link client's) hands the log
 * one stamped meta each time, whose encoded text the log keeps (AppendBatch's by-identity cache), instead of a new one
 * to validate and encode per append.
 */
export const stamp = (log: EventLog["Type"], hubId: string): EventLog["Type"] => {
  const stamped = new WeakMap<EventMeta, EventMeta>()
  const stampOnce = (meta: EventMeta): EventMeta => {
    if (meta.hubId !== undefined || !(meta instanceof EventMeta)) return stampMeta(meta, hubId)
    let out = stamped.get(meta)
    if (out === undefined) {
      out = stampMeta(meta, hubId)
      stamped.set(meta, out)
    }
    return out
  }
  return EventLog.of({
    ...log,
    append: (stream, events, options) => log.append(stream, events, { ...options, meta: stampOnce(options.meta) })
  })
}
