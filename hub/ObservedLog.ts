/**
 * The event log as the hub's operators see it: every event this hub appends is one line of the operational log
 * (`event.action` its type in kebab case, `source.ip` the client's address, masked when written; denials and
 * authentication failures at warn, the rest at info) and, with `--metrics-port`, counted in the metrics. Nothing of
 * an event's data is logged: its type, stream, workspace and actor say what happened; the log holds the rest.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { EventLog, type EventLogError, type VersionConflict } from "../core/EventLog.ts"
import type { Event, EventMeta } from "../core/Events.ts"
import * as OpsLog from "../core/OpsLog.ts"
import { HubMetrics, type HubMetricsShape } from "./metrics/Metrics.ts"

/** `AgentAuthFailed` → `agent-auth-failed`. */
export const actionOf = (type: string): string => type.replace(/([a-z0-9])([A-Z])/g, "$1-$2").toLowerCase()

const isRefusal = (type: string) => type.endsWith("Failed") || type.endsWith("Denied")

const line = (stream: string, workspaceId: string | null, meta: EventMeta, event: Event) => {
  const actor = meta.actor.id === undefined ? meta.actor.kind : `${meta.actor.kind} ${meta.actor.id}`
  const message = `${event._tag} on ${stream} by ${actor}${workspaceId === null ? "" : ` in workspace ${workspaceId}`}`
  const log = isRefusal(event._tag) ? Effect.logWarning(message) : Effect.logInfo(message)
  return log.pipe(OpsLog.annotate(actionOf(event._tag), meta.sourceIp))
}

const reasonOf = (error: VersionConflict | EventLogError) => (error._tag === "VersionConflict" ? "conflict" : error.reason.toLowerCase())

/** `log` with its appends logged and, when `metrics` is given, counted. */
export const observe = (log: EventLog["Type"], metrics: HubMetricsShape | undefined): EventLog["Type"] => ({
  ...log,
  append: (stream, events, options) =>
    Effect.gen(function*() {
      const started = yield* Clock.currentTimeMillis
      metrics?.inFlight(1)
      const result = yield* log.append(stream, events, options).pipe(
        Effect.tapError((e) => Effect.sync(() => metrics?.failed(reasonOf(e)))),
        Effect.ensuring(Effect.sync(() => metrics?.inFlight(-1)))
      )
      metrics?.appended(events, ((yield* Clock.currentTimeMillis) - started) / 1000)
      yield* Effect.forEach(events, (event) => line(stream, options.workspaceId, options.meta, event), { discard: true })
      return result
    })
})

/** The context's event log, observed; counted in the context's metrics when there are any. */
export const layer: Layer.Layer<EventLog, never, EventLog> = Layer.effect(
  EventLog,
  Effect.gen(function*() {
    const metrics = yield* Effect.serviceOption(HubMetrics)
    return observe(yield* EventLog, Option.getOrUndefined(metrics))
  })
)
