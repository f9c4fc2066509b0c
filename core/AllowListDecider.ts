/**
 * An agent's allow list (on the agent's stream, beside `AgentDecider`): the targets an admin lets it expose. Entries
 * are checked by `ExposeTarget`; setting the list it already has records nothing.
 */
import { Either } from "effect"
import type { Decider } from "./Decider.ts"
import { DomainError } from "./DomainError.ts"
import { AgentAllowListSet, type Event } from "./Events.ts"
import * as ExposeTarget from "./ExposeTarget.ts"
import type { AgentId } from "./Ids.ts"

/** The most entries an allow list holds: enough for any real network plan, small enough to check on every expose. */
export const MAX_ENTRIES = 256

/** What the log says about an agent's allow list. */
export interface AllowListState {
  readonly status: "none" | "active" | "revoked"
  /** Absent: anything but cloud metadata addresses. */
  readonly allow: ReadonlyArray<string> | undefined
}

/** Sets an agent's allow list; without `allow`, clears it. */
export interface SetAllowList {
  readonly _tag: "SetAllowList"
  readonly agentId: AgentId
  readonly allow?: ReadonlyArray<string>
}

const initialState: AllowListState = { status: "none", allow: undefined }

const evolve = (state: AllowListState, event: Event): AllowListState => {
  switch (event._tag) {
    case "AgentProvisioned":
      return { status: "active", allow: undefined }
    case "AgentTokenRevoked":
      return { ...state, status: "revoked" }
    case "AgentAllowListSet":
      return { ...state, allow: event.allow }
    default:
      return state
  }
}

const same = (a: ReadonlyArray<string> | undefined, b: ReadonlyArray<string> | undefined) =>
  a === b || (a !== undefined && b !== undefined && a.length === b.length && a.every((x, i) => x === b[i]))

const decide = (command: SetAllowList, state: AllowListState): Either.Either<ReadonlyArray<Event>, DomainError> => {
  if (state.status === "none") return Either.left(new DomainError({ reason: "NotFound", message: `agent ${command.agentId} not found` }))
  if (state.status === "revoked") {
    return Either.left(new DomainError({ reason: "Revoked", message: `agent ${command.agentId} has been revoked` }))
  }
  const allow = command.allow === undefined ? undefined : [...new Set(command.allow.map((e) => e.trim()).filter((e) => e !== ""))]
  if (allow !== undefined && (allow.length === 0 || allow.length > MAX_ENTRIES)) {
    return Either.left(new DomainError({ reason: "Invalid", message: `an allow list has 1 to ${MAX_ENTRIES} entries` }))
  }
  for (const entry of allow ?? []) {
    const parsed = ExposeTarget.parseAllowEntry(entry)
    if (Either.isLeft(parsed)) return Either.left(new DomainError({ reason: "Invalid", message: parsed.left }))
  }
  if (same(allow, state.allow)) return Either.right([])
  return Either.right([new AgentAllowListSet({ agentId: command.agentId, ...(allow ? { allow } : {}) })])
}

/** The allow-list decider. */
export const decider: Decider<SetAllowList, AllowListState, DomainError> = { initialState, evolve, decide }
