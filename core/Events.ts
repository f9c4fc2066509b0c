/**
 * The event catalog: every fact the hub writes to its append-only log, as Effect Schemas, with the codec that turns
 * an event into the log's `type` column and `data` jsonb and back. Events carry hashes and short prefixes of
 * secrets, never the secrets themselves; the workspace and the actor travel in the log envelope and `EventMeta`.
 *
 * The events are defined per aggregate in `events/` (their field schemas in `events/Fields.ts`); this module gathers
 * them into the catalog and exports all of them. Type names, field names and encodings are hashed into the chain:
 * they never change.
 */
import { Effect, Either, ParseResult, Schema } from "effect"
import {
  AgentAllowListSet,
  AgentAuthFailed,
  AgentConnected,
  AgentDisconnected,
  AgentIpChanged,
  AgentProvisioned,
  AgentTokenRevoked,
  AgentTokenRotated
} from "./events/AgentEvents.ts"
import { AuditRead, CheckpointSigned, SigningKeyRotated } from "./events/AuditEvents.ts"
import { ConsoleSignedIn, ConsoleSignedOut, ConsoleSignInFailed } from "./events/ConsoleEvents.ts"
import { LinkAccessed, LinkCreated, LinkRevoked } from "./events/LinkEvents.ts"
import { ServiceExposed, ServiceReleased, ServiceUnexposed } from "./events/ServiceEvents.ts"
import { ShareAccessed, ShareCreated, ShareJoined, ShareRevoked } from "./events/ShareEvents.ts"
import { ReachDenied, TunnelClosed, TunnelOpened } from "./events/TunnelEvents.ts"
import { ApiKeyAuthFailed, ApiKeyCreated, ApiKeyRevoked, WorkspaceCreated } from "./events/WorkspaceEvents.ts"

export * from "./events/AgentEvents.ts"
export * from "./events/AuditEvents.ts"
export * from "./events/ConsoleEvents.ts"
export * from "./events/EventMeta.ts"
export {
  AccessOutcome,
  ApiKeyPrefix,
  Count,
  HttpMethod,
  Ip,
  Port,
  SecretPrefix,
  ServiceName,
  Sha256Hex,
  SharePermission,
  Timestamp
} from "./events/Fields.ts"
export * from "./events/LinkEvents.ts"
export * from "./events/ServiceEvents.ts"
export * from "./events/ShareEvents.ts"
export * from "./events/TunnelEvents.ts"
export * from "./events/WorkspaceEvents.ts"

const classes = [
  WorkspaceCreated,
  ApiKeyCreated,
  ApiKeyRevoked,
  AgentProvisioned,
  AgentTokenRotated,
  AgentTokenRevoked,
  AgentConnected,
  AgentDisconnected,
  AgentIpChanged,
  AgentAuthFailed,
  ServiceExposed,
  ServiceUnexposed,
  TunnelOpened,
  TunnelClosed,
  ReachDenied,
  ShareCreated,
  ShareRevoked,
  ShareAccessed,
  LinkCreated,
  LinkRevoked,
  LinkAccessed,
  AgentAllowListSet,
  ServiceReleased,
  ApiKeyAuthFailed,
  CheckpointSigned,
  SigningKeyRotated,
  AuditRead,
  ShareJoined,
  ConsoleSignedIn,
  ConsoleSignedOut,
  ConsoleSignInFailed
] as const

/** Any event of the catalog. */
export const Event = Schema.Union(...classes)
/** Any event of the catalog. */
export type Event = typeof Event.Type

/** The `type` of an event: its class name, as stored in the log's `type` column. */
export type EventType = Event["_tag"]

/** Every event type of the catalog. */
export const eventTypes: ReadonlyArray<EventType> = classes.map((c) => c._tag)

/** The log was asked to decode an event type this catalog does not know. */
export class UnknownEventType extends Schema.TaggedError<UnknownEventType>()("UnknownEventType", {
  type: Schema.String
}) {
  override get message(): string {
    return `unknown event type "${this.type}"; known types: ${eventTypes.join(", ")}`
  }
}

/** A stored event's data does not match the schema of its type; `message` is the formatted parse error. */
export class EventDecodeError extends Schema.TaggedError<EventDecodeError>()("EventDecodeError", {
  type: Schema.String,
  message: Schema.String
}) {}

type EventClass = (typeof classes)[number]

interface Codec {
  readonly encode: (event: Event) => Record<string, unknown>
  readonly decode: (data: unknown) => Either.Either<Event, ParseResult.ParseError>
}

// Codecs are compiled once per type at module load, over the fields without `_tag` (the log keeps the type in its
// own column). A projection rebuild decodes the whole log: decoding the fields and then constructing the class
// without validating them a second time measured ~260k events/s against ~110k through the class schema.
const codecs = new Map<string, Codec>()
for (const c of classes as ReadonlyArray<EventClass>) {
  const { _tag, ...fields } = c.fields
  const struct = Schema.Struct(fields as Schema.Struct.Fields).annotations({ identifier: c._tag }) as unknown as Schema.Schema<
    object,
    Record<string, unknown>
  >
  const Ctor = c as unknown as new(props: unknown, disableValidation: true) => Event
  const encode: (event: Event) => Record<string, unknown> = Schema.encodeSync(struct)
  const decode = Schema.decodeUnknownEither(struct)
  codecs.set(c._tag, {
    encode,
    decode: (data) => {
      const result = decode(data)
      return Either.isRight(result) ? Either.right(new Ctor(result.right, true)) : Either.left(result.left)
    }
  })
}

/**
 * Encodes an event for the log: `type` is its tag and `data` its JSON-safe encoded fields without `_tag`; an event
 * that fails its own schema (built with validation disabled) is a defect.
 */
export const encodeEvent = (event: Event): { readonly type: EventType; readonly data: Record<string, unknown> } => ({
  type: event._tag,
  data: codecs.get(event._tag)!.encode(event)
})

/** Decodes a stored event from its `type` and `data`, synchronously, as an Either. */
export const decodeEventEither = (
  type: string,
  data: unknown
): Either.Either<Event, UnknownEventType | EventDecodeError> => {
  const codec = codecs.get(type)
  if (codec === undefined) return Either.left(new UnknownEventType({ type }))
  const result = codec.decode(data)
  return Either.isRight(result)
    ? result as Either.Either<Event, never>
    : Either.left(new EventDecodeError({ type, message: ParseResult.TreeFormatter.formatErrorSync(result.left) }))
}

/** Decodes a stored event from its `type` and `data`. */
export const decodeEvent = (
  type: string,
  data: unknown
): Effect.Effect<Event, UnknownEventType | EventDecodeError> => decodeEventEither(type, data)
