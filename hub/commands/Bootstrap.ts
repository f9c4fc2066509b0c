/**
 * First start of a hub: creates the default workspace and its first admin API key in one append, and prints the key
 * once. Idempotent across restarts and across several hubs starting on the same empty database.
 */
import { Console, Effect, Layer } from "effect"
import { EventLog, VersionConflict } from "../../core/EventLog.ts"
import { ApiKeyCreated, EventMeta, WorkspaceCreated } from "../../core/Events.ts"
import { ApiKeyId, Streams, uuidv7, WorkspaceId } from "../../core/Ids.ts"
import { apiKeyPrefix, generateApiKey, sha256Hex } from "../../core/Secrets.ts"
import * as Scrub from "../../core/Scrub.ts"
import { Sha256Hex } from "../../core/Events.ts"

/**
 * Id of the workspace a new hub starts with. Fixed, so that the `no_stream` check on its stream makes the bootstrap
 * happen exactly once whichever hub process gets there first.
 */
export const DEFAULT_WORKSPACE_ID = WorkspaceId.make("00000000-0000-7000-8000-000000000001")

/** What a bootstrap did: created the workspace and a key (returned once), or found it already done. */
export type BootstrapResult =
  | { readonly created: true; readonly workspaceId: string; readonly apiKey: string }
  | { readonly created: false; readonly workspaceId: string }

/** Creates the default workspace and an operator API key unless the hub was bootstrapped before. */
export const run = Effect.fn("Bootstrap.run")(function* () {
  const log = yield* EventLog
  const apiKey = generateApiKey()
  const result = yield* log
    .append(
      Streams.workspace(DEFAULT_WORKSPACE_ID),
      [
        new WorkspaceCreated({ workspaceId: DEFAULT_WORKSPACE_ID, name: "default" }),
        new ApiKeyCreated({
          apiKeyId: ApiKeyId.make(uuidv7()),
          workspaceId: DEFAULT_WORKSPACE_ID,
          name: "bootstrap admin",
          prefix: apiKeyPrefix(apiKey),
          keyHash: Sha256Hex.make(sha256Hex(apiKey)),
          // The operator's key: it reads every workspace's log.
          scope: "operator"
        })
      ],
      {
        expectedVersion: "no_stream",
        workspaceId: DEFAULT_WORKSPACE_ID,
        meta: new EventMeta({ actor: { kind: "system", id: "bootstrap" } })
      }
    )
    .pipe(
      Effect.as<BootstrapResult>({ created: true, workspaceId: DEFAULT_WORKSPACE_ID, apiKey }),
      Effect.catchIf(
        (e): e is VersionConflict => e instanceof VersionConflict,
        () => Effect.succeed<BootstrapResult>({ created: false, workspaceId: DEFAULT_WORKSPACE_ID })
      )
    )
  return result
})

/** Runs the bootstrap at hub start and prints the admin API key the one time it is created. */
export const layer = Layer.effectDiscard(
  Effect.flatMap(run(), (result) =>
    result.created
      ? Console.log(
          `first start: created workspace "default" (${result.workspaceId}) and its admin API key (scope operator: it ` +
            `reads every workspace's log) — shown once, store it now:\n\n    ${result.apiKey}\n`
        ).pipe(
          // Shown this once; no later line of this process may hold it.
          Effect.tap(() => Effect.sync(() => result.apiKey !== undefined && Scrub.remember(result.apiKey)))
        )
      : Effect.void
  )
)
