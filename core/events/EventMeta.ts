/** The envelope metadata of every event: who caused it, from where, through which hub. */
import { Schema } from "effect"
import { Ip, optional } from "./Fields.ts"

/** Who caused an event: an admin, an agent, an API key, the hub itself, or an anonymous public client. */
export const Actor = Schema.Struct({
  kind: Schema.Literal("admin", "agent", "apikey", "system", "public"),
  id: optional(Schema.String)
})
/** Who caused an event. */
export type Actor = typeof Actor.Type

/** The metadata stored beside every event in the log's `meta` column. */
export class EventMeta extends Schema.Class<EventMeta>("EventMeta")({
  actor: Actor,
  sourceIp: optional(Ip),
  userAgent: optional(Schema.String),
  hubId: optional(Schema.String),
  correlationId: optional(Schema.String)
}) {}
