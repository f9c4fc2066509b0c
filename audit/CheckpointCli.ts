/**
 * `connect audit pubkey` prints the hub's checkpoint public keys (the current one, then the retired ones that still
 * verify old notes) in the form `--key`/`--key-file` take; `connect audit rotate-key` retires the current key, makes a
 * new one and records the rotation in the log.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { Console, Effect, Layer, Option } from "effect"
import * as CheckpointNote from "../core/CheckpointNote.ts"
import { EventLog } from "../core/EventLog.ts"
import { EventMeta, SigningKeyRotated } from "../core/Events.ts"
import * as SignedNote from "../core/SignedNote.ts"
import * as SigningKeys from "../core/SigningKeys.ts"
import { AuditQueryError } from "./Query.ts"

const dataDir = Options.text("data-dir").pipe(
  Options.optional,
  Options.withDescription("The hub's data directory (default $CONNECT_HOME/hub), where its signing keys are.")
)

type Flags = { dataDir: string | undefined }

const vkey = (key: SigningKeys.SigningKey) => SignedNote.formatVerifierKey(SigningKeys.verifierOf(key))

/** The keys as `pubkey` prints them: newest first, each after a `#` line saying whether it is current. */
export const formatKeys = (ring: SigningKeys.KeyRing): string =>
  [...ring.keys].reverse().map((k) =>
    k.retiredAt === undefined
      ? `# current key ${k.keyId}, made ${k.createdAt.toISOString()}\n${vkey(k)}`
      : `# retired ${k.retiredAt.toISOString()} (made ${k.createdAt.toISOString()}); still verifies the notes it signed\n${vkey(k)}`
  ).join("\n")

/** `connect audit pubkey`, reading the hub's keys through `keysLayer`. */
export const pubkeyCommand = <E, R>(keysLayer: (flags: Flags) => Layer.Layer<SigningKeys.SigningKeyStore, E, R>) =>
  Command.make("pubkey", { dataDir }, (flags) =>
    Effect.gen(function*() {
      const store = yield* SigningKeys.SigningKeyStore
      const ring = yield* store.read
      if (Option.isNone(ring)) {
        return yield* new SigningKeys.SigningKeyError({ reason: "Missing", message: `no signing key at ${store.path}: start the hub once to make one` })
      }
      yield* Console.log(formatKeys(ring.value))
    }).pipe(Effect.provide(keysLayer({ dataDir: Option.getOrUndefined(flags.dataDir) })))).pipe(
    Command.withDescription(
      "Print the hub's checkpoint public keys, current first, then retired ones (they still verify the notes they " +
        "signed), one per line as `verify --key`/`--key-file` take them; lines starting with # say which is which."
    )
  )

const origin = Options.text("origin").pipe(
  Options.optional,
  Options.withDescription("Name of the new key (default: the current key's name, the hub's --checkpoint-origin).")
)

/** `connect audit rotate-key`, on the hub's keys and log through `keysLayer` and `logLayer`. */
export const rotateKeyCommand = <E, R, E2, R2>(
  logLayer: (flags: Flags) => Layer.Layer<EventLog, E, R>,
  keysLayer: (flags: Flags) => Layer.Layer<SigningKeys.SigningKeyStore, E2, R2>
) =>
  Command.make("rotate-key", { dataDir, origin }, (flags) =>
    Effect.gen(function*() {
      const store = yield* SigningKeys.SigningKeyStore
      const ring = yield* store.read
      const current = Option.flatMap(ring, SigningKeys.current)
      const name = Option.getOrElse(flags.origin, () => Option.match(current, { onNone: () => "", onSome: (k) => k.name }))
      if (!CheckpointNote.isOrigin(name)) {
        return yield* new AuditQueryError({ option: "--origin", message: "--origin must be non-empty, with no space and no '+'" })
      }
      const { key, previous } = yield* store.rotate(name)
      const log = yield* EventLog
      yield* log.append(
        SigningKeys.KEYS_STREAM,
        [new SigningKeyRotated({
          origin: name,
          keyId: key.keyId,
          publicKey: key.publicKey,
          ...(Option.isSome(previous) && { previousKeyId: previous.value.keyId })
        })],
        { expectedVersion: "any", workspaceId: null, meta: new EventMeta({ actor: { kind: "admin", id: "rotate-key" } }) }
      ).pipe(Effect.catchTag("VersionConflict", Effect.die))
      const old = Option.match(previous, { onNone: () => "", onSome: (k) => `; the old key ${k.keyId} is kept, retired, and still verifies the notes it signed` })
      yield* Console.log(`new checkpoint signing key ${key.keyId} (the hub signs with it from its next checkpoint)${old}:\n\n    ${vkey(key)}\n`)
    }).pipe(Effect.provide(Layer.merge(
      logLayer({ dataDir: Option.getOrUndefined(flags.dataDir) }),
      keysLayer({ dataDir: Option.getOrUndefined(flags.dataDir) })
    )))).pipe(
    Command.withDescription(
      "Retire the hub's checkpoint signing key and make a new one (kept in the data directory, 0600), recorded in the " +
        "log as SigningKeyRotated. Old notes still verify with the old public key, which `connect audit pubkey` keeps printing."
    )
  )
