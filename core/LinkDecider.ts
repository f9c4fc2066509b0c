/**
 * The public link aggregate (stream `link-<id>`): created once onto one service of a workspace with its limits
 * (expiry, methods, path prefixes, rate), revoked once; a revoked link stays revoked.
 */
import { Either } from "effect"
import { DomainError } from "./DomainError.ts"
import type { Decider } from "./Decider.ts"
import { type Event, type HttpMethod, LinkCreated, LinkRevoked, Sha256Hex } from "./Events.ts"
import type { LinkId, ServiceId } from "./Ids.ts"

/** What the log says about one link. */
export interface LinkState {
  readonly status: "none" | "active" | "revoked"
  readonly workspaceId: string | undefined
}

/** Commands on a link. */
export type LinkCommand =
  | {
    readonly _tag: "CreateLink"
    readonly linkId: LinkId
    readonly workspaceId: string
    readonly serviceId: ServiceId
    readonly serviceName: string
    readonly tokenHash: string
    readonly expiresAt: Date
    readonly now: Date
    readonly methods: ReadonlyArray<HttpMethod>
    readonly pathPrefixes: ReadonlyArray<string>
    readonly rateLimitPerMinute: number
  }
  | { readonly _tag: "RevokeLink"; readonly linkId: LinkId; readonly workspaceId: string }

const initialState: LinkState = { status: "none", workspaceId: undefined }

const evolve = (state: LinkState, event: Event): LinkState => {
  switch (event._tag) {
    case "LinkCreated":
      return { ...state, status: "active" }
    case "LinkRevoked":
      return { ...state, status: "revoked" }
    default:
      return state
  }
}

const invalid = (message: string) => Either.left(new DomainError({ reason: "Invalid", message }))

const decide = (command: LinkCommand, state: LinkState): Either.Either<ReadonlyArray<Event>, DomainError> => {
  switch (command._tag) {
    case "CreateLink": {
      if (state.status !== "none") {
        return Either.left(new DomainError({ reason: "AlreadyExists", message: `link ${command.linkId} already exists` }))
      }
      if (command.expiresAt.getTime() <= command.now.getTime()) return invalid("the link would expire before it is created")
      if (command.methods.length === 0) return invalid("a link allows at least one method")
      if (command.pathPrefixes.length === 0) return invalid("a link allows at least one path prefix")
      if (!Number.isInteger(command.rateLimitPerMinute) || command.rateLimitPerMinute < 1) {
        return invalid("the rate limit is a whole number of requests per minute, at least 1")
      }
      return Either.right([
        new LinkCreated({
          linkId: command.linkId,
          tokenHash: Sha256Hex.make(command.tokenHash),
          serviceId: command.serviceId,
          expiresAt: command.expiresAt,
          methods: [...command.methods],
          pathPrefixes: [...command.pathPrefixes],
          rateLimitPerMinute: command.rateLimitPerMinute,
          serviceName: command.serviceName
        })
      ])
    }
    case "RevokeLink":
      // The stream's workspace is the read model's to check (the handler reads the link scoped to the caller first).
      if (state.status === "none") {
        return Either.left(new DomainError({ reason: "NotFound", message: `link ${command.linkId} not found` }))
      }
      return Either.right(state.status === "revoked" ? [] : [new LinkRevoked({ linkId: command.linkId })])
  }
}

/** The link decider. */
export const decider: Decider<LinkCommand, LinkState, DomainError> = { initialState, evolve, decide }
