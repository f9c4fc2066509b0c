/**
 * One running hub per hub id on a database. At its start a hub closes in the log what it left open when it last died,
 * by its id (PgLeftOpen.ts), and replays its data directory's spool; a second hub with the same id (a second
 * `connect hub` on the same directory with `DATABASE_URL` set, a copied directory, a restored backup) would record the
 * running hub's live agents as disconnected and its open tunnels as closed. So the gateway holds, for its whole life,
 * a session-level advisory lock keyed by its id on a connection of its own, and a hub that finds it held by a live
 * session refuses to start, saying which.
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Deferred, Duration, Effect, Schedule, Schema } from "effect"
import type { Scope } from "effect"
import { sha256Hex } from "../../core/Secrets.ts"

/** Another live session holds this hub id's lock: a hub with the same id runs on this database. */
export class HubIdInUse extends Schema.TaggedError<HubIdInUse>()("HubIdInUse", {
  hubId: Schema.String,
  message: Schema.String
}) {}

/** First key of the two-key advisory lock ('conn'); the append lock uses the one-key space, which never overlaps. */
const LOCK_CLASS = 0x636f6e6e

/** Second key: 28 bits of the id's SHA-256 (two ids sharing it would only make the later one wait or stop). */
const keyOf = (hubId: string) => parseInt(sha256Hex(`connect-hub:${hubId}`).slice(0, 7), 16)

/**
 * How often the holding session runs a statement. It keeps the session's `state_change` fresh, which is how a
 * starting hub tells a live holder (fail at once) from a session whose hub died with its machine (wait for Postgres
 * to end it), and it finds a lost connection.
 */
export const HEARTBEAT = Duration.seconds(5)

/**
 * `idle_session_timeout` of the holding session (Postgres 14+): when its hub's machine dies, Postgres ends the session
 * (and frees the lock) this long after the last heartbeat, instead of after the OS's TCP keepalive (two hours).
 */
export const IDLE_SESSION_TIMEOUT = Duration.seconds(30)

/** How long a starting hub waits for a lock whose holder has been silent for more than three heartbeats. */
export const WAIT = Duration.seconds(40)

interface Holder {
  readonly pid: number
  readonly address: string | null
  readonly application: string | null
  readonly silentMs: number | null
}

const describe = (h: Holder | undefined) =>
  h === undefined
    ? "a session that has since ended"
    : `Postgres session ${h.pid}${h.address ? ` from ${h.address}` : ""}${h.application ? ` (${h.application})` : ""}`

/**
 * Takes the lock of `hubId` and holds it until the scope closes; fails with `HubIdInUse` when a live session holds it
 * (at once) or a silent one still does after {@link WAIT}. Once held, a lost connection is logged and the lock taken
 * again on a new one.
 */
export const hold = (hubId: string): Effect.Effect<void, HubIdInUse | SqlError, SqlClient.SqlClient | Scope.Scope> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const key = [LOCK_CLASS, keyOf(hubId)]
    const held = yield* Deferred.make<void, HubIdInUse | SqlError>()

    const holder = sql.unsafe<Holder>(
      `select l.pid, a.client_addr::text as address, a.application_name as application,
              (extract(epoch from clock_timestamp() - a.state_change) * 1000)::float8 as "silentMs"
         from pg_locks l left join pg_stat_activity a on a.pid = l.pid
        where l.locktype = 'advisory' and l.granted and l.database = (select oid from pg_database where datname = current_database())
          and l.classid = $1::oid and l.objid = $2::oid and l.objsubid = 2`,
      key
    ).pipe(Effect.map((rows) => rows[0]))

    const session = Effect.scoped(Effect.gen(function*() {
      const connection = yield* sql.reserve
      const run = (statement: string, params: ReadonlyArray<unknown> = []) => connection.executeRaw(statement, params)
      // Older servers know no idle_session_timeout: the lock then lasts until their TCP keepalive ends a dead session.
      yield* run(`set idle_session_timeout = ${Duration.toMillis(IDLE_SESSION_TIMEOUT)}`).pipe(Effect.ignore)
      const deadline = Date.now() + Duration.toMillis(WAIT)
      while (true) {
        const [row] = yield* connection.execute(`select pg_try_advisory_lock($1::int, $2::int) as locked`, key, undefined)
        if (row?.locked === true) break
        const h = yield* holder
        const live = h !== undefined && (h.silentMs === null || h.silentMs < 3 * Duration.toMillis(HEARTBEAT))
        if (live || Date.now() >= deadline) {
          return yield* new HubIdInUse({
            hubId,
            message: `another hub with id ${hubId} is running on this database (${describe(h)}): two hubs must not ` +
              `share a data directory or a copy of one; give this one its own data directory (a new hub-id)` +
              (h === undefined ? "" : `; if that hub is gone, end its session: select pg_terminate_backend(${h.pid})`)
          })
        }
        yield* Effect.sleep("1 second")
      }
      yield* Effect.addFinalizer(() =>
        Effect.ignore(Effect.zipRight(run(`select pg_advisory_unlock($1::int, $2::int)`, key), run(`reset idle_session_timeout`)))
      )
      yield* Deferred.succeed(held, undefined)
      // Fails once the connection is lost (the lock with it).
      return yield* run("select 1").pipe(Effect.repeat(Schedule.spaced(HEARTBEAT)))
    }))

    yield* session.pipe(
      // The first failure is the start's (the gateway stops); later ones, after a lost connection, are retried.
      Effect.catchAll((e) =>
        Effect.flatMap(Deferred.fail(held, e), (first) =>
          first ? Effect.void : Effect.logError(`hub: the lock of hub id ${hubId} was lost and cannot be taken again; retrying`, e))
      ),
      Effect.zipRight(Effect.sleep(HEARTBEAT)),
      Effect.forever,
      Effect.forkScoped
    )
    yield* Deferred.await(held)
  })
