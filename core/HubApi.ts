/**
 * The hub's HTTP API, declared once and schema only: the hub serves it (hub/http/AgentApi.ts) and the agent calls it
 * (agent/HubApi.ts). Requests carry `Authorization: Bearer <secret>` (an API key `pc_…` or an agent token); every
 * error answer is `{"error":{"code","message"}}` with the status its code has here.
 *
 *   POST /v1/agents         (API key)  {"label"?,"ttl"?} → 201 {"agentId","workspaceId","token","expiresAt"}
 *   POST /v1/agents/rotate  (agent token)          → 200 {"token","expiresAt","oldValidUntil"}
 *   GET  /v1/agents         (API key)              → 200 {"agents":[{"agentId","label","online","lastIp",...}]}
 *   GET  /v1/services       (API key or agent)     → 200 {"services":[{"name","agentId","agentLabel","online"}]}
 *   GET  /v1/audit/events   (API key)  ?since&until&type&workspace&agent&service&outcome&ip&limit&before
 *                                                  → 200 {"events":[{"position","id","type","data","meta",...}],"next"}
 *   GET  /v1/audit/tail     (API key)  ?after&type&workspace&agent&service&outcome&ip&limit&wait  or  ?after&tail&wait
 *                                                  → 200 {"tail","events":[...oldest first],"position"} (long poll)
 *   GET  /v1/audit/integrity (API key)             → 200 {"verify","checkpoint"} (the latest of each, or null)
 *   GET  /v1/audit/stats    (API key)  ?since&until&workspace&by&limit&reveal
 *                                                  → 200 {"asOf","events","byType","denials","services","agents",...}
 *   GET  /v1/audit/access   (API key)  ?service&at&workspace&reveal
 *                                                  → 200 {"text","access"} (who could reach the service then)
 *   POST /v1/links          (API key)  {"service","expires"?,"methods"?,"paths"?,"rateLimit"?}
 *                                                  → 201 {"linkId","url","domainUrl","token",...}
 *   GET  /v1/links          (API key)              → 200 {"links":[{"linkId","service","status","expiresAt",...}]}
 *   POST /v1/links/:linkId/revoke (API key)        → 200 {"linkId","revokedAt"}
 *
 *   POST /v1/shares         (API key)  {"services","expires"?,"name"?,"rateLimit"?} → 201 {"code","share"}
 *   GET  /v1/shares         (API key)              → 200 {"shares":[{"shareId","services","status",...}]}
 *   POST /v1/shares/:shareId/revoke (API key)      → 200 {"shareId","revoked"}
 *   POST /v1/shares/join    (agent token) {"code"} → 200 {"share","owner","joined"}
 *
 *   POST /v1/workspaces                      (operator key) {"name"}  → 201 {"workspaceId","name","apiKey":{...,"key"}}
 *   POST /v1/workspaces/:id/apikeys          (API key) {"name"?,"scope"?} → 201 {"apiKeyId","prefix","key","scope",...}
 *   GET  /v1/workspaces/:id/apikeys          (API key)              → 200 {"apiKeys":[{"apiKeyId","prefix","scope",...}]}
 *   POST /v1/apikeys/:apiKeyId/revoke        (API key)              → 200 {"apiKeyId","revoked"}
 *   GET  /v1/workspaces/:id/agents           (API key)              → 200 {"agents":[{"agentId","label","online",...}]}
 *   GET  /v1/workspaces/:id/services         (API key)              → 200 {"services":[{"name","agentId","agentLabel","online"}]}
 *   POST /v1/agents/:agentId/revoke          (API key) {"reason"?}  → 200 {"agentId","revoked","released"}
 *
 * Each group and its bodies live in core/api/ (errors, authentication, agents and services, audit, links, shares,
 * admin), re-exported here. To add endpoints, declare a group there and `.add` it to `HubApi`; the hub serves it with
 * `HttpApiBuilder.group`.
 */
import * as HttpApi from "@effect/platform/HttpApi"
import { Agents, Services } from "./api/Agents.ts"
import { Admin } from "./api/Admin.ts"
import { Audit } from "./api/Audit.ts"
import { Errors } from "./api/Errors.ts"
import { Links } from "./api/Links.ts"
import { Shares } from "./api/Shares.ts"

export * from "./api/Errors.ts"
export * from "./api/Auth.ts"
export * from "./api/Common.ts"
export * from "./api/Agents.ts"
export * from "./api/Audit.ts"
export * from "./api/Links.ts"
export * from "./api/Shares.ts"
export * from "./api/Admin.ts"

/** The hub's API. Any endpoint may answer a malformed request (400, 413) and an unavailable event log (503). */
export class HubApi extends HttpApi.make("connect-hub")
  .add(Agents)
  .add(Services)
  .add(Audit)
  .add(Links)
  .add(Shares)
  .add(Admin)
  .addError(Errors.BadRequest)
  .addError(Errors.BodyTooLarge)
  .addError(Errors.Unavailable)
{}
