/**
 * The append writer's own Postgres connection: opened on first use and replaced after a failure, with its statement
 * pipeline, its timeouts, and the transaction wrapper that rolls back, or drops the connection, when a transaction fails.
 */
import type { PgClient } from "@effect/sql-pg"
import { Cause, Duration, Effect, Option, Redacted, type Scope } from "effect"
import Pg from "pg"
import { EventLogError } from "../../core/EventLog.ts"
import * as PgPipeline from "./PgPipeline.ts"
import * as Recovery from "./PgWriterRecovery.ts"
import { ProjectionSql } from "../../core/ProjectionSql.ts"

/** The writer's connection, with its pipeline (see `PgPipeline`). */
export interface WriterConnection {
  readonly client: Pg.Client
  /** Statements sent together: a transaction is two round trips (begin + head; writes + commit). */
  readonly pipeline: PgPipeline.Pipeline
  /** The same connection as inline projections see it: their writes join the pipeline and go with the commit. */
  readonly projectionSql: ProjectionSql["Type"]
  /**
   * The database server's clock as this process estimates it (milliseconds since the epoch): the local clock plus the
   * offset measured when the connection opened, within half a round trip.
   */
  readonly databaseNow: () => number
}

/** Runs transactions on the writer's connection. */
export interface Connector {
  /**
   * Runs `body`, which opens and commits a transaction on the writer's connection through its pipeline. After a
   * failure the transaction is rolled back; a connection that failed (or an interrupted one, whose statement may still
   * be running), or that cannot even roll back, is dropped and the next transaction opens a new one.
   */
  readonly transaction: <A, E>(body: (conn: WriterConnection) => Effect.Effect<A, E>) => Effect.Effect<A, E | EventLogError>
  /** The open connection, if there is one: the writer's fast path (`PgWriterFast`) runs on it without an Effect. */
  readonly current: () => WriterConnection | undefined
  /**
   * Ends a transaction that failed outside `transaction` with `error`: a server error is rolled back; a connection
   * that failed, or one that cannot even roll back, is dropped.
   */
  readonly abandon: (conn: WriterConnection, error: unknown) => Effect.Effect<void>
}

/**
 * node-postgres settings for the writer's own connection: the same server, user and type parsers as the pool, a
 * statement timeout, a client-side timeout 2 s later for a server that stops answering altogether, and TCP keepalive
 * after 10 s idle (the OS default waits two hours to notice a peer that vanished).
 */
const writerConfig = (config: PgClient.PgClientConfig, statementTimeout: number): Pg.ClientConfig => ({
  ...(config.url ? { connectionString: Redacted.value(config.url) } : {}),
  ...(config.host ? { host: config.host } : {}),
  ...(config.port ? { port: config.port } : {}),
  ...(config.database ? { database: config.database } : {}),
  ...(config.username ? { user: config.username } : {}),
  ...(config.password ? { password: Redacted.value(config.password) } : {}),
  ...(config.ssl !== undefined ? { ssl: config.ssl } : {}),
  ...(config.types ? { types: config.types } : {}),
  application_name: `${config.applicationName ?? "connect"} writer`,
  connectionTimeoutMillis: Duration.toMillis(config.connectTimeout ?? Duration.seconds(5)),
  statement_timeout: statementTimeout,
  query_timeout: statementTimeout + 2000,
  keepAlive: true,
  keepAliveInitialDelayMillis: 10_000
})

/** Whether a failed transaction left its connection unusable: it failed, or the outcome of its COMMIT is unknown. */
const connectionFailed = (cause: Cause.Cause<unknown>): boolean => {
  const failure = Cause.failureOption(cause)
  if (Option.isNone(failure)) return false
  const kind = Recovery.classify(failure.value)
  return kind === "down" || kind === "unknown"
}

/**
 * The writer's connector. The writer runs its transactions on a node-postgres connection of its own rather than
 * through the pool: through @effect/sql each statement cost ~0.27 ms on the client against ~0.08 ms raw, and with a
 * pipeline a transaction is two round trips (begin + lock + head; insert + projection writes + commit) instead of
 * five, all while it holds the append lock that every hub process queues on. Closed with the scope.
 */
export const make = (
  config: PgClient.PgClientConfig,
  statementTimeout: number
): Effect.Effect<Connector, never, Scope.Scope> =>
  Effect.gen(function* () {
    let current: WriterConnection | undefined
    const discard = (conn: WriterConnection) =>
      Effect.sync(() => {
        if (current === conn) current = undefined
        conn.client.end().catch(() => undefined)
      })
    const open = Effect.async<WriterConnection, EventLogError>((resume) => {
      const client = new Pg.Client(writerConfig(config, statementTimeout))
      const pipeline = PgPipeline.make(client)
      let offset = 0
      const conn: WriterConnection = {
        databaseNow: () => Date.now() + offset,
        client,
        pipeline,
        projectionSql: ProjectionSql.of({
          execute: (text, params) => Effect.try({ try: () => void pipeline.add(text, params), catch: (error) => error })
        })
      }
      const lost = () => {
        if (current === conn) current = undefined
      }
      client.on("error", lost)
      client.on("end", lost)
      const fail = (error: Error) => {
        client.end().catch(() => undefined)
        resume(Effect.fail(Recovery.unavailable(error)))
      }
      client.connect((error: Error | undefined) => {
        if (error) return fail(error)
        // The writer stamps appends with the database's time without asking for it (see PgAppendTransaction): it
        // measures how far its clock is from the server's once, here.
        const sent = Date.now()
        client.query<{ at: Date }>("select clock_timestamp() as at", (error: Error | null, result) => {
          if (error) return fail(error)
          const received = Date.now()
          offset = new Date(result.rows[0]!.at).getTime() - (sent + received) / 2
          current = conn
          resume(Effect.succeed(conn))
        })
      })
      return Effect.sync(() => void client.end().catch(() => undefined))
    })
    const connect = Effect.suspend(() => (current ? Effect.succeed(current) : open))
    yield* Effect.addFinalizer(() => (current ? discard(current) : Effect.void))

    const rollback = (conn: WriterConnection) =>
      conn.pipeline.recover("rollback").pipe(
        Effect.timeout("5 seconds"),
        Effect.catchAllCause(() => discard(conn))
      )
    const transaction = <A, E>(body: (conn: WriterConnection) => Effect.Effect<A, E>) =>
      Effect.flatMap(connect, (conn) =>
        body(conn).pipe(
          Effect.onError((cause) =>
            Cause.isInterruptedOnly(cause) || connectionFailed(cause) ? discard(conn) : rollback(conn)
          )
        )
      )
    const abandon = (conn: WriterConnection, error: unknown) =>
      Recovery.isServerError(error) ? rollback(conn) : discard(conn)
    return { transaction, current: () => current, abandon }
  })
