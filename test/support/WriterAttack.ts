/**
 * Helpers of the writer attack tests (test/hub/eventlog/WriterAttack*.int.test.ts): a hub's event log on a given database URL,
 * raw sessions on it (as the owner, or as a login role that is only a member of the hub's role `connect_writer`), and
 * the stored rows as plain values.
 */
import * as Crypto from "node:crypto"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { type Context, Effect, Layer } from "effect"
import Pg from "pg"
import { inject } from "vitest"
import { type AppendOptions, EventLog } from "../../core/EventLog.ts"
import { EventMeta, WorkspaceCreated } from "../../core/Events.ts"
import { uuidv7 } from "../../core/Ids.ts"
import * as Database from "../../hub/db/Database.ts"
import * as Migrations from "../../hub/db/Migrations.ts"
import * as PgEventLog from "../../hub/eventlog/PgEventLog.ts"
import * as StreamHeads from "../../hub/readmodels/StreamHeads.ts"

export const meta = new EventMeta({ actor: { kind: "system" } })

export const opts = (expectedVersion: AppendOptions["expectedVersion"], ids?: ReadonlyArray<string>): AppendOptions => ({
  expectedVersion,
  workspaceId: null,
  meta,
  ...(ids ? { ids } : {})
})

export const created = (name: string) => new WorkspaceCreated({ workspaceId: uuidv7() as never, name })

export type Log = Context.Context<EventLog | SqlClient.SqlClient | PgClient.PgClient>

/** A hub's event log (its own pool and writer) on `url`, migrated, with the stream heads projection inline. */
export const logOn = (url: string, options: PgEventLog.PgEventLogOptions = { inline: [StreamHeads.projection] }) =>
  PgEventLog.layer(options).pipe(
    Layer.provideMerge(Layer.effectDiscard(Migrations.run)),
    Layer.provideMerge(PgClient.layer(Database.pgClientConfig(url, { maxConnections: 3, connectTimeout: "2 seconds" })))
  )

export const append = (ctx: Log, stream: string, name: string, o: AppendOptions) =>
  Effect.flatMap(EventLog, (log) => log.append(stream, [created(name)], o)).pipe(Effect.provide(ctx))

/** A raw node-postgres session on `url`, closed with the scope. */
export const session = (url: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const c = new Pg.Client({ connectionString: url, types: Database.types })
      await c.connect()
      c.on("error", () => {})
      return c
    }),
    (c) => Effect.promise(() => c.end().catch(() => undefined))
  )

/** Runs one statement on a session; a failure is returned as its SQLSTATE (or message), a success as "ok". */
export const attempt = (c: Pg.Client, text: string, params: ReadonlyArray<unknown> = []) =>
  Effect.promise(() =>
    c.query(text, params as Array<unknown>).then(
      () => "ok",
      (e: { code?: string; message: string }) => e.code ?? e.message
    )
  )

export const query = <R extends Record<string, unknown>>(c: Pg.Client, text: string, params: ReadonlyArray<unknown> = []) =>
  Effect.promise(() => c.query<R>(text, params as Array<unknown>)).pipe(Effect.map((r) => r.rows))

const admin = (statement: string) =>
  Effect.promise(async () => {
    const c = new Pg.Client({ connectionString: inject("adminDatabaseUrl") })
    await c.connect()
    try {
      await c.query(statement)
    } finally {
      await c.end()
    }
  })

/**
 * The URL of `url`'s database as a new login role whose only privilege is membership of `connect_writer` (what the
 * hub's runtime role has). The role is dropped when the scope closes (close its sessions before: open them later).
 */
export const writerRoleUrl = (url: string) =>
  Effect.gen(function* () {
    const role = `wa_${Crypto.randomBytes(5).toString("hex")}`
    yield* Effect.acquireRelease(
      admin(`create role ${role} login in role connect_writer`),
      () => admin(`drop role if exists ${role}`).pipe(Effect.ignore)
    )
    const u = new URL(url)
    u.username = role
    u.password = ""
    return u.toString()
  })

/** The stored events as plain rows, in position order. */
export const rows = (c: Pg.Client) =>
  query<{ position: number; id: string; stream: string; version: number; name: string; recorded_ms: number }>(
    c,
    `select position, id::text, stream, version, data->>'name' as name,
            (extract(epoch from recorded_at) * 1000)::bigint as recorded_ms
       from events order by position`
  )
