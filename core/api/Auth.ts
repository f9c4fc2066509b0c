/**
 * Authentication: `Authorization: Bearer <API key or agent token>`, or a console session, by what an endpoint takes.
 * Part of the hub API declared in core/HubApi.ts.
 */
import * as HttpApiMiddleware from "@effect/platform/HttpApiMiddleware"
import * as HttpApiSecurity from "@effect/platform/HttpApiSecurity"
import { Context, type Effect, Schema } from "effect"
import type { AgentId } from "../Ids.ts"
import { Errors, Forbidden, TooManyRequests, Unavailable } from "./Errors.ts"

/** The caller of an endpoint that takes an API key. */
export class ApiKeyCaller extends Context.Tag("connect/HubApi/ApiKeyCaller")<ApiKeyCaller, {
  readonly apiKeyId: string
  readonly workspaceId: string
  /** `workspace`: reads its own workspace only; `operator`: reads every workspace. */
  readonly scope: "workspace" | "operator"
  /** Where the request came from (through the hub's trusted proxies) and its user agent, sanitised, for the record. */
  readonly from: { readonly ip: string; readonly userAgent?: string | undefined }
  /** Refuses the request as beyond the key's scope (403), recorded as every refused API key is (`wrong_scope`). */
  readonly outOfScope: (message: string) => Effect.Effect<never, Forbidden | Unavailable>
  /** Records a refusal of this key for a bound it reached (coalesced per address, as failed keys are) and answers 429. */
  readonly limited: (message: string) => Effect.Effect<never, TooManyRequests | Unavailable>
}>() {}

/** The caller of an endpoint that takes an agent token. */
export class AgentCaller extends Context.Tag("connect/HubApi/AgentCaller")<AgentCaller, {
  readonly agentId: AgentId
  readonly workspaceId: string
}>() {}

/** The caller of an endpoint that takes either credential: the workspace it acts in. */
export class WorkspaceCaller extends Context.Tag("connect/HubApi/WorkspaceCaller")<WorkspaceCaller, {
  readonly workspaceId: string
  /** The agent, when the credential is an agent token. */
  readonly agentId?: string
}>() {}

/** How a credential is refused: missing or bad (401), of the wrong kind (403), too many from the address (429). */
const AuthFailure = Schema.Union(Errors.Unauthorized, Errors.Forbidden, Errors.TooManyRequests, Errors.Unavailable)

/**
 * The web console's session cookie (hub/console/): an API key exchanged at `/ui` for a session of the same scope.
 * Tried before the bearer header, and only for GET (the console reads): without one, the bearer decides the answer.
 */
export const ConsoleSession = HttpApiSecurity.apiKey({ key: "connect_console", in: "cookie" })

/**
 * An API key (`pc_…`), or a console session made with one; an agent token is refused (403) without a look-up. Every
 * refused key is recorded.
 */
export class ApiKeyAuth extends HttpApiMiddleware.Tag<ApiKeyAuth>()("connect/HubApi/ApiKeyAuth", {
  security: { session: ConsoleSession, bearer: HttpApiSecurity.bearer },
  provides: ApiKeyCaller,
  failure: AuthFailure
}) {}

/** An agent token (current, or previous within its rotation grace); an API key is refused (403) without a look-up. */
export class AgentTokenAuth extends HttpApiMiddleware.Tag<AgentTokenAuth>()("connect/HubApi/AgentTokenAuth", {
  security: { bearer: HttpApiSecurity.bearer },
  provides: AgentCaller,
  failure: AuthFailure
}) {}

/** An API key or an agent token, told apart by the `pc_` prefix, or a console session. */
export class WorkspaceAuth extends HttpApiMiddleware.Tag<WorkspaceAuth>()("connect/HubApi/WorkspaceAuth", {
  security: { session: ConsoleSession, bearer: HttpApiSecurity.bearer },
  provides: WorkspaceCaller,
  failure: AuthFailure
}) {}
