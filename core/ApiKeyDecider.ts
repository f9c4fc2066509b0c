/**
 * The API key aggregate (stream `apikey-<id>`): issued for one workspace as prefix + SHA-256, revoked once.
 */
import { Either } from "effect"
import { DomainError } from "./DomainError.ts"
import type { Decider } from "./Decider.ts"
import { ApiKeyCreated, ApiKeyRevoked, type ApiKeyScope, type Event, Sha256Hex } from "./Events.ts"
import type { ApiKeyId, WorkspaceId } from "./Ids.ts"

/** What the log says about one API key. */
export interface ApiKeyState {
  readonly status: "none" | "active" | "revoked"
  readonly workspaceId: string | undefined
}

/** Commands on an API key. */
export type ApiKeyCommand =
  | {
    readonly _tag: "CreateApiKey"
    readonly apiKeyId: ApiKeyId
    readonly workspaceId: WorkspaceId
    readonly name: string
    readonly prefix: string
    readonly keyHash: string
    /** What the key may read: its workspace (the default) or every workspace. */
    readonly scope?: ApiKeyScope
  }
  | { readonly _tag: "RevokeApiKey"; readonly apiKeyId: ApiKeyId }

const initialState: ApiKeyState = { status: "none", workspaceId: undefined }

const evolve = (state: ApiKeyState, event: Event): ApiKeyState => {
  switch (event._tag) {
    case "ApiKeyCreated":
      return { status: "active", workspaceId: event.workspaceId }
    case "ApiKeyRevoked":
      return { ...state, status: "revoked" }
    default:
      return state
  }
}

const decide = (command: ApiKeyCommand, state: ApiKeyState): Either.Either<ReadonlyArray<Event>, DomainError> => {
  switch (command._tag) {
    case "CreateApiKey": {
      if (state.status !== "none") {
        return Either.left(new DomainError({ reason: "AlreadyExists", message: `API key ${command.apiKeyId} already exists` }))
      }
      const name = command.name.trim()
      if (name === "") return Either.left(new DomainError({ reason: "Invalid", message: "the API key name is empty" }))
      return Either.right([
        new ApiKeyCreated({
          apiKeyId: command.apiKeyId,
          workspaceId: command.workspaceId,
          name,
          prefix: command.prefix,
          keyHash: Sha256Hex.make(command.keyHash),
          scope: command.scope ?? "workspace"
        })
      ])
    }
    case "RevokeApiKey":
      if (state.status === "none") {
        return Either.left(new DomainError({ reason: "NotFound", message: `API key ${command.apiKeyId} not found` }))
      }
      return Either.right(state.status === "revoked" ? [] : [new ApiKeyRevoked({ apiKeyId: command.apiKeyId })])
  }
}

/** The API key decider. */
export const decider: Decider<ApiKeyCommand, ApiKeyState, DomainError> = { initialState, evolve, decide }
