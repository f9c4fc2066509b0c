/**
 * Offline audit reads (`connect audit verify`, `connect audit export`) coalesced per actor, kind and window, in
 * Postgres (tables of migration 0030): a script that verifies every minute must not grow the append-only log by an
 * event a minute for ever, and each run is a process of its own, so nothing can hold the window in memory as the hub's
 * denial coalescers do (core/Windows.ts).
 *
 * The rule, per (actor, kind): the first read of a window is recorded at once and opens the window; a read within it
 * whose outcome is the window's (`signature`: verify's intact or where it broke; a broken chain is never folded into
 * intact runs) is only counted in `audit_read_windows`; the count reaches the log as one `AuditRead` with `runs`,
 * `firstAt` and `lastAt`, written either by the first read after the window (which carries it: one event for the
 * ended window's rest and itself) or by the hub, which closes ended windows while it runs (`closer`). A read with
 * another outcome is recorded at once, after the window's rest as an event of its own. Every read is on the record:
 * the runs of the events plus the `pending` of the windows is exactly the number of reads.
 *
 * Exactly once, whoever dies when: a decision and its bookkeeping commit in one transaction that also puts the events
 * decided into `audit_read_outbox` under the ids they will be appended with; then they are appended (the log's
 * append is idempotent by id) and taken out. A process killed in between leaves them for the next run or the hub to
 * append — by id, so never twice.
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Duration, Effect, Schedule, Schema } from "effect"
import { EventLog, type EventLogError, type VersionConflict } from "../core/EventLog.ts"
import { AuditRead, EventMeta } from "../core/Events.ts"
import { uuidv7 } from "../core/Ids.ts"

/**
 * The window of an offline read: an hour. Shorter than the interval of a script that runs verify or export (minutes),
 * a window would coalesce nothing; an hour holds such a script to at most two events an hour per actor and kind, and
 * a read with a new outcome still reaches the log at once.
 */
export const WINDOW_MS = 3_600_000

/** How often the hub closes ended windows. */
export const CLOSE_EVERY = Duration.seconds(10)

/** One offline read to record. */
export interface Read {
  /** Who read, as the window's key: `admin` for the local admin, or an API key's `apikey:<id>`. */
  readonly actor: string
  readonly event: AuditRead
  readonly workspaceId: string | null
  readonly meta: EventMeta
  /** What a later read must share with the window's to be counted in it: its outcome, not its range or time. */
  readonly signature: string
}

/** What became of a read: recorded on the log now, or counted in its open window. */
export type Recorded = "recorded" | "counted"

interface WindowRow {
  readonly pending: number
  readonly signature: string
  readonly first_at: Date | null
  readonly last_at: Date | null
  readonly workspace_id: string | null
  readonly last_event: unknown
  readonly last_meta: unknown
  readonly now: Date
  readonly ended: boolean
}

interface OutboxRow {
  readonly id: string
  readonly stream: string
  readonly workspace_id: string | null
  readonly event: unknown
  readonly meta: unknown
}

/** An event decided, with the id and stream it is appended under. */
interface Entry {
  readonly id: string
  readonly workspaceId: string | null
  readonly event: AuditRead
  readonly meta: EventMeta
}

const encodeEvent = Schema.encodeSync(AuditRead)
const decodeEvent = Schema.decodeUnknown(AuditRead)
const encodeMeta = Schema.encodeSync(EventMeta)
const decodeMeta = Schema.decodeUnknown(EventMeta)

const coalesced = (event: AuditRead, runs: number, firstAt: Date, lastAt: Date): AuditRead =>
  new AuditRead({ ...event, runs, firstAt, lastAt })

/** The event of a window's counted runs: its last run's, with their number and times. */
const restOf = (row: WindowRow) =>
  Effect.gen(function*() {
    const last = yield* decodeEvent(row.last_event)
    const meta = yield* decodeMeta(row.last_meta)
    const entry: Entry = {
      id: uuidv7(),
      workspaceId: row.workspace_id,
      event: coalesced(last, row.pending, row.first_at ?? row.now, row.last_at ?? row.now),
      meta
    }
    return entry
  })

const putInOutbox = (sql: SqlClient.SqlClient, entries: ReadonlyArray<Entry>) =>
  Effect.forEach(entries, (e) =>
    sql.unsafe(
      `insert into audit_read_outbox (id, stream, workspace_id, event, meta) values ($1, $2, $3, $4::jsonb, $5::jsonb)`,
      [e.id, `auditread-${e.id}`, e.workspaceId, JSON.stringify(encodeEvent(e.event)), JSON.stringify(encodeMeta(e.meta))]
    ), { discard: true })

/**
 * Decides, in one transaction, whether `read` is counted in its open window or recorded, and puts what is to be
 * recorded in the outbox: the events to append, in order (none when it was counted).
 */
const decide = (read: Read, windowMs: number) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.withTransaction(Effect.gen(function*() {
      const key = [read.actor, read.event.kind]
      // A first read of this key makes its row, already ended, so that two first reads at once queue on one row lock.
      yield* sql.unsafe(
        `insert into audit_read_windows (actor, kind, window_ms, started_at, signature) values ($1, $2, $3, '-infinity', '')
         on conflict (actor, kind) do nothing`,
        [...key, windowMs]
      )
      const [row] = yield* sql.unsafe<WindowRow>(
        `select pending, signature, first_at, last_at, workspace_id, last_event, last_meta, clock_timestamp() as now,
                clock_timestamp() >= started_at + window_ms * interval '1 millisecond' as ended
           from audit_read_windows where actor = $1 and kind = $2 for update`,
        key
      )
      const last = [read.workspaceId, JSON.stringify(encodeEvent(read.event)), JSON.stringify(encodeMeta(read.meta))]
      if (!row!.ended && row!.signature === read.signature) {
        yield* sql.unsafe(
          `update audit_read_windows set pending = pending + 1, first_at = coalesce(first_at, $3), last_at = $3,
                  workspace_id = $4, last_event = $5::jsonb, last_meta = $6::jsonb
            where actor = $1 and kind = $2`,
          [...key, row!.now, ...last]
        )
        return []
      }
      // The window ended (the runs it counted are carried by this read's event) or this read's outcome is another
      // (they are recorded first, on their own).
      const carried = row!.pending > 0 && row!.signature === read.signature
      const entries: Array<Entry> = row!.pending > 0 && !carried ? [yield* restOf(row!)] : []
      entries.push({
        id: uuidv7(),
        workspaceId: read.workspaceId,
        event: carried ? coalesced(read.event, row!.pending + 1, row!.first_at ?? row!.now, row!.now) : read.event,
        meta: read.meta
      })
      yield* sql.unsafe(
        `update audit_read_windows set window_ms = $3, started_at = $4, signature = $5, pending = 0, first_at = null,
                last_at = null, workspace_id = $6, last_event = $7::jsonb, last_meta = $8::jsonb
          where actor = $1 and kind = $2`,
        [...key, windowMs, row!.now, read.signature, ...last]
      )
      yield* putInOutbox(sql, entries)
      return entries
    }))
  )

/**
 * Appends what the outbox holds, oldest first, each under its own id (an event a crashed run or another process
 * appended already is not appended again), and takes it out.
 */
export const drain: Effect.Effect<number, SqlError | EventLogError | VersionConflict, SqlClient.SqlClient | EventLog> = Effect
  .gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const log = yield* EventLog
    const rows = yield* sql.unsafe<OutboxRow>(
      `select id::text, stream, workspace_id::text, event, meta from audit_read_outbox order by id limit 1000`
    )
    for (const row of rows) {
      const decoded = yield* Effect.all([decodeEvent(row.event), decodeMeta(row.meta)]).pipe(Effect.either)
      // A row no build can append (hand-edited) stays for the operator to see rather than stopping every other one.
      if (decoded._tag === "Left") {
        yield* Effect.logWarning(`audit read outbox: entry ${row.id} does not decode; left in place`)
        continue
      }
      const [event, meta] = decoded.right
      yield* log.append(row.stream, [event], { expectedVersion: "any", workspaceId: row.workspace_id, meta, ids: [row.id] })
      yield* sql.unsafe(`delete from audit_read_outbox where id = $1`, [row.id])
    }
    return rows.length
  })

/** Records one offline read: counted in its open window, or appended now (with whatever the outbox held before). */
export const record = (read: Read, options: { readonly windowMs?: number } = {}) =>
  Effect.gen(function*() {
    const entries = yield* decide(read, options.windowMs ?? WINDOW_MS)
    yield* drain
    return (entries.length > 0 ? "recorded" : "counted") satisfies Recorded as Recorded
  })

/**
 * Puts the counted runs of every ended window in the outbox (the window stays ended: the next read opens a new one)
 * and appends them; the hub runs it every {@link CLOSE_EVERY}. Returns the number of windows closed.
 */
export const closeEnded = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const closed = yield* sql.withTransaction(Effect.gen(function*() {
    const rows = yield* sql.unsafe<WindowRow & { actor: string; kind: string }>(
      `select actor, kind, pending, signature, first_at, last_at, workspace_id, last_event, last_meta,
              clock_timestamp() as now, true as ended
         from audit_read_windows
        where pending > 0 and clock_timestamp() >= started_at + window_ms * interval '1 millisecond'
        for update skip locked`
    )
    const entries = yield* Effect.forEach(rows, restOf)
    yield* putInOutbox(sql, entries)
    for (const row of rows) {
      yield* sql.unsafe(
        `update audit_read_windows set pending = 0, first_at = null, last_at = null where actor = $1 and kind = $2`,
        [row.actor, row.kind]
      )
    }
    return rows.length
  }))
  yield* drain
  return closed
})

/** The hub's part: closes ended windows every `every` while the scope lasts; a failure is logged and tried again. */
export const closer = (every: Duration.DurationInput = CLOSE_EVERY) =>
  closeEnded.pipe(
    Effect.catchAllCause((cause) => Effect.logWarning("audit read windows: could not close ended windows", cause)),
    Effect.repeat(Schedule.spaced(every)),
    Effect.forkScoped,
    Effect.asVoid
  )
