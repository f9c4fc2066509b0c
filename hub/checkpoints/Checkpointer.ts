/**
 * The hub's signed checkpoints: at start, the signing key is made (first start) and recorded in the log
 * (`SigningKeyRotated`, its public key printed once); then every N events or M minutes the head of the log is signed
 * as a C2SP note, written to `<dataDir>/checkpoints/<position>.note`, recorded (`CheckpointSigned`) and handed to the
 * operator's command; one more at clean shutdown when anything was appended since the last.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Clock, Console, Effect, Either, Layer, Option, Schema } from "effect"
import * as CheckpointNote from "../../core/CheckpointNote.ts"
import { messageOf } from "../../core/ErrorMessage.ts"
import { EventLog } from "../../core/EventLog.ts"
import { CheckpointSigned, EventMeta, Sha256Hex, SigningKeyRotated } from "../../core/Events.ts"
import * as SignedNote from "../../core/SignedNote.ts"
import * as SigningKeys from "../../core/SigningKeys.ts"
import * as CheckpointCommand from "./CheckpointCommand.ts"
import { HubConfig } from "../HubConfig.ts"
import * as KeyFile from "./KeyFile.ts"

/** When and how the hub signs checkpoints (`connect hub --checkpoint-*`). */
export interface CheckpointSettings {
  /** Sign once this many events were appended since the last checkpoint. */
  readonly every: number
  /** Sign once this long passed since the last checkpoint, if anything was appended (ms). */
  readonly intervalMs: number
  /** Shell command that gets each note on stdin. */
  readonly command?: string | undefined
  /** The note's first line and the name of a new key. */
  readonly origin: string
}

/** Default `--checkpoint-every`. */
export const DEFAULT_EVERY = 10_000
/** Default `--checkpoint-interval`: 5 minutes. */
export const DEFAULT_INTERVAL_MS = 5 * 60_000

/**
 * How often the head is looked at. One indexed read of the last row per second costs nothing beside the appends it
 * counts, and puts a checkpoint at most a second after it is due.
 */
export const POLL_MS = 1_000

/** The default origin: this machine's name and `/connect`, stable across restarts (unlike a port chosen at start). */
export const defaultOrigin = (): string => {
  const origin = `${Os.hostname().toLowerCase()}/connect`
  return CheckpointNote.isOrigin(origin) ? origin : "localhost/connect"
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }

/** A `--checkpoint-interval` (`30s`, `5m`, `1h`) in ms, from 1 s to 24 h, or why it is not one. */
export const parseInterval = (text: string): Either.Either<number, string> => {
  const m = /^(\d{1,9})(ms|s|m|h)$/.exec(text.trim())
  const ms = m ? Number(m[1]) * UNIT_MS[m[2]!]! : NaN
  return ms >= 1_000 && ms <= 86_400_000
    ? Either.right(ms)
    : Either.left(`--checkpoint-interval must be a duration from 1s to 24h, such as 30s, 5m or 1h (got ${JSON.stringify(text.slice(0, 40))})`)
}

/** The checkpoint note could not be written. */
export class CheckpointError extends Schema.TaggedError<CheckpointError>()("CheckpointError", {
  message: Schema.String
}) {}

/** Whether a checkpoint is due: something beyond our own last checkpoint event, and N events or M ms since it. */
export const isDue = (s: {
  readonly head: number
  readonly lastEvent: number
  readonly elapsedMs: number
  readonly every: number
  readonly intervalMs: number
}): boolean => s.head > s.lastEvent && (s.head - s.lastEvent >= s.every || s.elapsedMs >= s.intervalMs)

const meta = new EventMeta({ actor: { kind: "system", id: "checkpoints" } })

/** The directory of the notes. */
export const notesDir = (dataDir: string) => Path.join(dataDir, "checkpoints")

/** The highest position signed in `dir` (0 when none). */
const lastNoted = (dir: string): number => {
  try {
    return Math.max(0, ...Fs.readdirSync(dir).map((f) => /^(\d+)\.note$/.exec(f)).map((m) => (m ? Number(m[1]) : 0)))
  } catch {
    return 0
  }
}

const currentKey = (store: SigningKeys.SigningKeyStore["Type"], origin: string) =>
  Effect.flatMap(store.ensure(origin), (ring) =>
    Option.match(SigningKeys.current(ring), {
      onNone: () => Effect.fail(new SigningKeys.SigningKeyError({ reason: "Missing", message: `every key in ${store.path} is retired` })),
      onSome: (key) => Effect.succeed({ ring, key })
    }))

/**
 * Makes the key on the first start and records the current key in the log unless it already is (so a key made by a
 * start that then failed, or by `connect audit rotate-key` whose append failed, is recorded now). Prints the public
 * key when it records it.
 */
export const recordKey = Effect.fn("Checkpoints.recordKey")(function*(origin: string) {
  const log = yield* EventLog
  const store = yield* SigningKeys.SigningKeyStore
  const { key, ring } = yield* currentKey(store, origin)
  const recorded = yield* log.readStream(SigningKeys.KEYS_STREAM)
  if (recorded.some((e) => e.event._tag === "SigningKeyRotated" && e.event.keyId === key.keyId)) return false
  const previous = ring.keys[ring.keys.indexOf(key) - 1]
  yield* log.append(
    SigningKeys.KEYS_STREAM,
    [new SigningKeyRotated({ origin, keyId: key.keyId, publicKey: key.publicKey, ...(previous && { previousKeyId: previous.keyId }) })],
    // "any" never conflicts.
    { expectedVersion: "any", workspaceId: null, meta }
  ).pipe(Effect.catchTag("VersionConflict", Effect.die))
  const vkey = SignedNote.formatVerifierKey(SigningKeys.verifierOf(key))
  yield* Console.log(
    `checkpoint signing key ${key.keyId} (public; give it to your auditors, \`connect audit pubkey\` prints it again):\n\n    ${vkey}\n`
  )
  return true
})

/**
 * Signs the head of the log with the current key (read again each time, so a rotation applies to the next note),
 * writes the note, records it, and hands it to the command. None when the log is empty.
 */
export const signHead = Effect.fn("Checkpoints.sign")(function*(settings: CheckpointSettings, dataDir: string) {
  const log = yield* EventLog
  const store = yield* SigningKeys.SigningKeyStore
  const head = yield* log.head
  if (head.position === 0) return Option.none()
  const { key } = yield* currentKey(store, settings.origin)
  const checkpoint = { origin: settings.origin, position: head.position, headHash: Buffer.from(head.hash).toString("hex") }
  const note = Either.getOrThrow(SignedNote.sign(CheckpointNote.format(checkpoint), [SigningKeys.signerOf(key)]))
  const path = Path.join(notesDir(dataDir), `${head.position}.note`)
  // A note already here for this position over another head is evidence of the history this hub signed before (its
  // database restored or cut and grown again, or another database on this data directory): signing the new head with
  // the same key and origin would fork, and replacing the file would destroy that evidence. (Line 3 is the head hash.)
  const earlier = Fs.existsSync(path) ? Fs.readFileSync(path, "utf8").split("\n")[2] : undefined
  if (earlier !== undefined && earlier !== checkpoint.headHash) {
    return yield* new CheckpointError({
      message: `${path} signs position ${head.position} with head ${earlier.slice(0, 16)}…, but the log now holds ` +
        `${checkpoint.headHash.slice(0, 16)}… there: the log was rewritten or cut, or this data directory belongs to ` +
        `another database (check with connect audit verify --checkpoint ${path}); the earlier note is kept, nothing signed`
    })
  }
  yield* Effect.try({
    try: () => {
      Fs.mkdirSync(notesDir(dataDir), { recursive: true, mode: 0o700 })
      KeyFile.writeAtomic(path, note, 0o644)
    },
    catch: (cause) => new CheckpointError({ message: `cannot write the checkpoint ${path}: ${messageOf(cause)}` })
  })
  const appended = yield* log.append(
    SigningKeys.CHECKPOINTS_STREAM,
    [new CheckpointSigned({ ...checkpoint, headHash: Sha256Hex.make(checkpoint.headHash), keyId: key.keyId })],
    { expectedVersion: "any", workspaceId: null, meta }
  ).pipe(Effect.catchTag("VersionConflict", Effect.die))
  yield* Console.log(`checkpoint signed at position ${head.position} (key ${key.keyId}): ${path}`)
  if (settings.command !== undefined) {
    yield* CheckpointCommand.run(settings.command, note, path, head.position).pipe(
      Effect.catchAll((e) => Console.error(`connect hub: ${e.message} (checkpoint ${path})`))
    )
  }
  return Option.some({ position: head.position, eventPosition: appended.lastPosition, path })
})

/**
 * Why the log no longer holds the last note in `dir` (its tail cut, or another event at its position: rewritten, or
 * this data directory is another database's), or undefined when it does or there is none.
 */
export const lastNoteBroken = Effect.fn("Checkpoints.lastNoteBroken")(function*(dir: string) {
  const log = yield* EventLog
  const noted = lastNoted(dir)
  if (noted === 0) return undefined
  const path = Path.join(dir, `${noted}.note`)
  const signed = Fs.readFileSync(path, "utf8").split("\n")[2] ?? ""
  const [held] = yield* log.readAll(noted - 1, 1)
  const why = held === undefined
    ? `the log ends at position ${(yield* log.head).position}, but ${path} signs position ${noted}: its tail was cut`
    : Buffer.from(held.hash).toString("hex") !== signed
    ? `the log holds another event at position ${noted} than ${path} signs (head ${signed.slice(0, 16)}…): it was rewritten`
    : undefined
  return why === undefined ? undefined : `${why}, or this data directory belongs to another database. ` +
    `No checkpoint is signed over this history (check with connect audit verify --checkpoint ${path}; to sign ` +
    `a history you accept, move ${dir} aside and keep it: it is evidence)`
})

/** A failure of one checkpoint, as the one line the hub prints before going on. */
const report = (e: { readonly message: string }) => Console.error(`connect hub: checkpoint not signed: ${e.message}`)

/** Records the key, then signs checkpoints while the scope is open and once more when it closes. */
export const layer = (settings: CheckpointSettings, dataDir: string) =>
  Layer.scopedDiscard(
    Effect.gen(function*() {
      const log = yield* EventLog
      // A log that no longer holds the last note signed is said once, loudly, and nothing is signed over it: signing
      // another history with the same key and origin would fork what this hub has vouched for. Checked before the
      // key is recorded, which appends.
      const broken = yield* lastNoteBroken(notesDir(dataDir))
      yield* recordKey(settings.origin)
      if (broken !== undefined) return yield* Console.error(`connect hub: WARNING: checkpoints stopped: ${broken}`)
      // Our last checkpoint event follows the last note signed (a restart counts from there); with no note yet, or
      // notes beyond the head (of another database), everything in the log is unsigned.
      const noted = lastNoted(notesDir(dataDir))
      const head = (yield* log.head).position
      const state = { lastEvent: noted > 0 && noted < head ? noted + 1 : 0, lastAt: yield* Clock.currentTimeMillis }
      const sign = signHead(settings, dataDir).pipe(
        Effect.tap(Option.match({
          onNone: () => Effect.void,
          onSome: (signed) => Effect.map(Clock.currentTimeMillis, (now) => {
            state.lastEvent = signed.eventPosition
            state.lastAt = now
          })
        })),
        Effect.catchAll(report),
        // A checkpoint once begun is finished (note, event, command) even when the hub is stopping.
        Effect.uninterruptible
      )
      // Added before the loop is forked, so it runs after the loop is interrupted.
      yield* Effect.addFinalizer(() =>
        log.head.pipe(
          Effect.flatMap((head) => (head.position > state.lastEvent ? sign : Effect.void)),
          Effect.catchAll(report)
        )
      )
      const tick = Effect.gen(function*() {
        const head = yield* log.head
        const now = yield* Clock.currentTimeMillis
        const due = isDue({ head: head.position, lastEvent: state.lastEvent, elapsedMs: now - state.lastAt, ...settings })
        if (due) yield* sign
      }).pipe(Effect.catchAll(report))
      yield* Effect.forkScoped(Effect.forever(Effect.zipRight(Effect.sleep(Math.min(POLL_MS, settings.intervalMs)), tick)))
    })
  )

/** The checkpointer of the running hub (its key file in the data directory), when its configuration asks for one. */
export const layerConfig = Layer.unwrapEffect(
  Effect.map(HubConfig, (config) =>
    config.checkpoints === undefined
      ? Layer.empty
      : layer(config.checkpoints, config.dataDir).pipe(Layer.provide(KeyFile.layer(config.dataDir))))
)
