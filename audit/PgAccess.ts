/**
 * `connect audit access` over Postgres: finds the position of the instant asked about, then reads only the events the
 * answer folds (the service's, the last of each kind per agent of its workspace, the shares and links naming it), each
 * through an index of migrations 0001/0010/0013, and hands them to audit/Access.ts. Folding these gives the answer folding
 * the whole log would (test/audit/Access.int.test.ts compares both).
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect, Either } from "effect"
import { EventLogError } from "../core/EventLog.ts"
import { decodeEventEither } from "../core/Events.ts"
import * as Access from "./Access.ts"

interface Row {
  readonly position: string
  readonly workspace_id: string | null
  readonly type: string
  readonly data: string
  readonly recorded_ms: string
}

const COLUMNS = `position::text, workspace_id::text, type, data::text,
  (extract(epoch from recorded_at) * 1000)::bigint::text as recorded_ms`

const SERVICE_TYPES = ["ServiceExposed", "ServiceUnexposed", "ServiceReleased"]
// Constants in the text, not parameters: the planner proves the partial index's predicate from them.
const AGENT_TYPES_SQL = "'AgentProvisioned', 'AgentTokenRotated', 'AgentTokenRevoked', 'AgentConnected', " +
  "'AgentDisconnected', 'AgentAllowListSet'"

const factOf = (row: Row): Either.Either<Access.AccessFact, EventLogError> =>
  Either.map(
    Either.mapLeft(decodeEventEither(row.type, JSON.parse(row.data)), (e) =>
      new EventLogError({ reason: "Decode", message: `event at position ${row.position} does not decode: ${e.message}` })),
    (event) => ({
      position: Number(row.position),
      workspaceId: row.workspace_id,
      recordedAt: new Date(Number(row.recorded_ms)),
      event
    })
  )

/**
 * The position of `at`: the last event recorded at or before it, by `recorded_at` (position breaks ties: a batch
 * shares its time), one backward step in `events_recorded_at`. Instants are milliseconds here and microseconds in
 * Postgres: `at` stands for its whole millisecond.
 */
const asOf = (at: Date) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* sql.unsafe<{ position: string; recorded_ms: string }>(
      `select position::text, (extract(epoch from recorded_at) * 1000)::bigint::text as recorded_ms from events
       where recorded_at < $1::timestamptz + interval '1 millisecond'
       order by recorded_at desc, events.position desc limit 1`,
      [at.toISOString()]
    )
    return row === undefined
      ? new Access.AccessError({ reason: "EmptyLog", message: `the log holds no event recorded at or before ${at.toISOString()}` })
      : { position: Number(row.position), recordedAt: new Date(Number(row.recorded_ms)) }
  })

/** Every event about the services the query names (by name, or by id), up to the position. */
const serviceEvents = (query: Access.AccessQuery, upTo: number) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.unsafe<Row>(
      `select ${COLUMNS} from events
       where type = any($1::text[]) and data @> $2::jsonb and position <= $3::bigint order by events.position`,
      [SERVICE_TYPES, JSON.stringify(Access.isServiceId(query.service) ? { serviceId: query.service } : { name: query.service }), upTo]
    ))

/** The names of the services exposed up to the position: the hints of a not-found answer. */
const knownNames = (upTo: number) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql.unsafe<{ name: string }>(
        `select distinct data->>'name' as name from events where type = 'ServiceExposed' and position <= $1::bigint limit 10000`,
        [upTo]
      ),
      (rows) => rows.map((r) => r.name)
    ))

/**
 * Per agent of the workspace, the last event of each type up to the position (a replaced connection's end skipped,
 * as the fold ignores it): the fold keeps the last of each, so these few rows fold to what all of them would. Each is
 * one backward step in `events_agent_state` (migration 0013), whose predicate this statement repeats word for word.
 */
const agentEvents = (workspaceId: string, upTo: number) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.unsafe<Row>(
      `with agents as (
         select distinct data->>'agentId' as agent_id from events
         where type = 'AgentProvisioned' and workspace_id = $1::uuid and position <= $2::bigint)
       select e.* from agents a cross join unnest(array[${AGENT_TYPES_SQL}]) as t(type)
       cross join lateral (
         select ${COLUMNS} from events
         where data->>'agentId' = a.agent_id and events.type = t.type and events.type in (${AGENT_TYPES_SQL})
           and position <= $2::bigint and workspace_id = $1::uuid
           and not (events.type = 'AgentDisconnected' and data->>'reason' = 'replaced')
         order by events.position desc limit 1) e`,
      [workspaceId, upTo]
    ))

/** The shares and links naming the service, and the revocations of any share or link, up to the position. */
const grantEvents = (serviceId: string, upTo: number) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.unsafe<Row>(
      `select ${COLUMNS} from events where position <= $3::bigint and (
         (type = 'ShareCreated' and data @> $1::jsonb) or (type = 'LinkCreated' and data @> $2::jsonb)
         or type = any(array['ShareRevoked', 'LinkRevoked']))`,
      [JSON.stringify({ services: [{ serviceId }] }), JSON.stringify({ serviceId }), upTo]
    ))

const facts = (rows: ReadonlyArray<Row>) =>
  Effect.forEach(rows, (row) => factOf(row))

/** Who could reach the service the query names at its instant, read from Postgres. */
export const read = (
  query: Access.AccessQuery
): Effect.Effect<Access.Access, Access.AccessError | EventLogError | SqlError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const position = yield* asOf(query.at)
    if (position instanceof Access.AccessError) return yield* position
    const services = Access.fold(yield* facts(yield* serviceEvents(query, position.position)))
    if (services.services.size === 0) return yield* Access.notFound(query, position, yield* knownNames(position.position))
    const service = Access.pickService(services, query, position)
    if (service instanceof Access.AccessError) return yield* service
    const [agents, grants] = yield* Effect.all([
      service.workspaceId === null ? Effect.succeed([]) : agentEvents(service.workspaceId, position.position),
      grantEvents(service.serviceId, position.position)
    ], { concurrency: 2 })
    const state = Access.fold([...yield* facts(agents), ...yield* facts(grants)])
    return Access.answer({ ...state, services: services.services }, service, query.at, position)
  }).pipe(Effect.withSpan("Audit.access"))
