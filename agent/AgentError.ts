/**
 * Why the agent stopped or refused an operation, and the refusals every command shares: no credentials in
 * CONNECT_HOME, and a request the hub denied.
 */
import { Effect, Option, Schema } from "effect"
import type { RelayDenied } from "../core/RelayPolicy.ts"
import * as State from "./State.ts"

/** Why the agent stopped or refused an operation. */
export class AgentError extends Schema.TaggedError<AgentError>()("AgentError", {
  /**
   * "NotProvisioned": no state in CONNECT_HOME; "Unauthorized": the hub refuses the token; "Denied": the hub refused
   * an expose or reach (see `code`); "NotFound": no such exposure; "Listen": a reach port cannot be bound;
   * "AlreadyRunning": another agent owns this CONNECT_HOME; "Detach": the background agent did not come up;
   * "Offline": not connected to the hub; "CheckFailed": `reach --check` found DNS or TCP failing on the exposer's side.
   */
  reason: Schema.Literal(
    "NotProvisioned",
    "Unauthorized",
    "Denied",
    "NotFound",
    "Listen",
    "AlreadyRunning",
    "Detach",
    "Offline",
    "CheckFailed"
  ),
  message: Schema.String,
  code: Schema.optional(Schema.String)
}) {}

/** The message for a CONNECT_HOME without credentials. */
export const notProvisioned = (home: string) =>
  new AgentError({
    reason: "NotProvisioned",
    message: `no agent credentials in ${home}: run \`connect up --hub URL --api-key KEY\` first`
  })

/** The hub refused `what` (e.g. "expose db"). */
export const denied = (what: string, error: RelayDenied) =>
  new AgentError({ reason: "Denied", code: error.code, message: `cannot ${what}: ${error.message}` })

/** The state of the agent in `home`; fails with "NotProvisioned" when it was never provisioned there. */
export const requireState = (home: string): Effect.Effect<State.AgentState, AgentError | State.StateError> =>
  Effect.flatMap(State.load(home), Option.match({ onNone: () => Effect.fail(notProvisioned(home)), onSome: Effect.succeed }))
