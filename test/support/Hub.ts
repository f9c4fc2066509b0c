/**
 * The real hub layers in this process on port 0, on a fresh test database (optionally behind a given URL, e.g. a
 * cuttable proxy), with a clock the test moves; helpers for the HTTP API, admin operations and the event log.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as HttpServer from "@effect/platform/HttpServer"
import type { SqlClient } from "@effect/sql"
import { Context, Effect, Layer } from "effect"
import type { Scope } from "effect"
import { EventLog, type StoredEvent } from "../../core/EventLog.ts"
import * as Admin from "../../hub/commands/Admin.ts"
import type { HubConfigShape } from "../../hub/HubConfig.ts"
import * as Main from "../../hub/Main.ts"
import * as TestDatabase from "./TestDatabase.ts"

/** A running in-process hub. */
export interface TestHub {
  readonly port: number
  readonly httpUrl: string
  /** `ws://127.0.0.1:<port>/v1/agent`. */
  readonly agentUrl: string
  readonly dataDir: string
  /** Moves the hub's clock by `ms`. */
  readonly advance: (ms: number) => void
  /** Runs an effect against the hub's database and log. */
  readonly run: <A, E>(effect: Effect.Effect<A, E, EventLog | SqlClient.SqlClient>) => Effect.Effect<A, E>
  /** Every event in the log. */
  readonly events: Effect.Effect<ReadonlyArray<StoredEvent>>
  /** Creates a workspace; resolves its id and admin API key. */
  readonly workspace: (name: string) => Effect.Effect<{ readonly workspaceId: string; readonly apiKey: string }>
  /** A JSON request to the API. */
  readonly http: (
    method: string,
    path: string,
    bearer?: string,
    body?: unknown
  ) => Effect.Effect<{ readonly status: number; readonly body: any }>
}

/**
 * Starts a hub for the scope. `databaseUrl` defaults to a fresh test database; `auditRoutes` serve the API's audit
 * group (audit/AuditApi.ts; default: 404s).
 */
export const start = (options: {
  readonly databaseUrl?: string
  readonly start?: Date
  readonly auditRoutes?: Main.HubOptions["auditRoutes"]
  /** The hub's token lifetime in days (`CONNECT_TOKEN_TTL_DAYS`; default 30). */
  readonly ttlDays?: number
  /** Settings of the hub's configuration besides its address, data directory and database (limits, link domain). */
  readonly config?: Partial<HubConfigShape>
} = {}): Effect.Effect<
  TestHub,
  never,
  Scope.Scope
> =>
  Effect.gen(function*() {
    const databaseUrl = options.databaseUrl ?? (yield* TestDatabase.makeTestDatabaseUrl)
    const dataDir = yield* Effect.acquireRelease(
      Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-hub-"))),
      (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
    )
    let now = (options.start ?? new Date()).getTime()
    const context = yield* Layer.build(
      Main.HubLive(
        { host: "127.0.0.1", port: 0, dataDir, databaseUrl, ...options.config },
        {
          tokenSettings: { ttlDays: options.ttlDays ?? 30, now: () => new Date(now) },
          ...(options.auditRoutes ? { auditRoutes: options.auditRoutes } : {})
        }
      )
    ).pipe(Effect.orDie)
    const address = Context.get(context, HttpServer.HttpServer).address
    const port = address._tag === "TcpAddress" ? address.port : 0
    const httpUrl = `http://127.0.0.1:${port}`
    const run = <A, E>(effect: Effect.Effect<A, E, EventLog | SqlClient.SqlClient>) => Effect.provide(effect, context)
    return {
      port,
      httpUrl,
      agentUrl: `ws://127.0.0.1:${port}/v1/agent`,
      dataDir,
      advance: (ms) => {
        now += ms
      },
      run,
      events: run(Effect.flatMap(EventLog, (log) => log.readAll(0, 100_000))).pipe(Effect.orDie),
      workspace: (name) =>
        run(Admin.createWorkspace(name)).pipe(
          Effect.map((w) => ({ workspaceId: w.workspaceId, apiKey: w.apiKey.key })),
          Effect.orDie
        ),
      http: (method, path, bearer, body) =>
        Effect.promise(async () => {
          const response = await fetch(`${httpUrl}${path}`, {
            method,
            headers: {
              ...(bearer ? { authorization: `Bearer ${bearer}` } : {}),
              ...(body === undefined ? {} : { "content-type": "application/json" })
            },
            ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) })
          })
          const text = await response.text()
          return { status: response.status, body: text ? JSON.parse(text) : undefined }
        })
    } satisfies TestHub
  })
