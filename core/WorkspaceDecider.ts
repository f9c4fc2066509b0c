/**
 * The workspace aggregate (stream `workspace-<id>`): created once, with a name.
 */
import { Either } from "effect"
import { DomainError } from "./DomainError.ts"
import type { Decider } from "./Decider.ts"
import { type Event, WorkspaceCreated } from "./Events.ts"
import type { WorkspaceId } from "./Ids.ts"

/** What the log says about one workspace. */
export interface WorkspaceState {
  readonly exists: boolean
  readonly name: string | undefined
}

/** Commands on a workspace. */
export type WorkspaceCommand = { readonly _tag: "CreateWorkspace"; readonly workspaceId: WorkspaceId; readonly name: string }

const initialState: WorkspaceState = { exists: false, name: undefined }

const evolve = (state: WorkspaceState, event: Event): WorkspaceState =>
  event._tag === "WorkspaceCreated" ? { exists: true, name: event.name } : state

const decide = (command: WorkspaceCommand, state: WorkspaceState): Either.Either<ReadonlyArray<Event>, DomainError> => {
  if (state.exists) {
    return Either.left(new DomainError({ reason: "AlreadyExists", message: `workspace ${command.workspaceId} already exists` }))
  }
  const name = command.name.trim()
  if (name === "") return Either.left(new DomainError({ reason: "Invalid", message: "the workspace name is empty" }))
  return Either.right([new WorkspaceCreated({ workspaceId: command.workspaceId, name })])
}

/** The workspace decider. */
export const decider: Decider<WorkspaceCommand, WorkspaceState, DomainError> = { initialState, evolve, decide }
