/**
 * The hub's event log on a fresh test database: migrations applied, the same inline projections as the hub; and
 * agents provisioned straight through the agent decider.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as AgentDecider from "../../core/AgentDecider.ts"
import { EventMeta } from "../../core/Events.ts"
import { AgentId, Streams, uuidv7 } from "../../core/Ids.ts"
import { generateAgentToken, sha256Hex } from "../../core/Secrets.ts"
import * as AgentAuth from "../../hub/commands/AgentAuth.ts"
import * as Command from "../../hub/commands/Command.ts"
import * as Main from "../../hub/Main.ts"
import * as Migrations from "../../hub/db/Migrations.ts"
import * as PgEventLog from "../../hub/eventlog/PgEventLog.ts"
import * as TestDatabase from "./TestDatabase.ts"

/** EventLog + SqlClient + PgClient on a fresh migrated database with the hub's inline projections. */
export const layer = PgEventLog.layer({ inline: Main.INLINE_PROJECTIONS }).pipe(
  Layer.provideMerge(Migrations.layer),
  Layer.provideMerge(TestDatabase.layer),
  Layer.orDie
)

/** Token settings of the tests: 30-day tokens, the real clock. */
export const tokenSettings = Layer.succeed(AgentAuth.TokenSettings, { ttlDays: 30, now: () => new Date() })

/** Provisions an agent in `workspaceId` through the agent decider, its token valid for `days`; resolves id and token. */
export const provisionAgent = (workspaceId: string, label: string, days = 30) =>
  Effect.gen(function*() {
    const agentId = AgentId.make(uuidv7())
    const token = generateAgentToken()
    yield* Command.handle(AgentDecider.decider, Streams.agent(agentId), {
      _tag: "ProvisionAgent",
      agentId,
      label,
      tokenHash: sha256Hex(token),
      expiresAt: new Date(Date.now() + days * 86_400_000)
    }, { workspaceId, meta: new EventMeta({ actor: { kind: "admin" } }) })
    return { agentId, token }
  })
