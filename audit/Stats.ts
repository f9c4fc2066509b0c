/**
 * `connect audit --stats`: what the log says in aggregate over a time window, answered from the rollup projection
 * (audit/StatsProjection.ts, hourly buckets) rather than by scanning events. The options are checked here, the rollups
 * caught up to the head first (a hub that is not running has not followed the log), then read by audit/PgStats.ts and
 * printed by audit/StatsRender.ts.
 */
import type { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Console, Effect, Either } from "effect"
import type { EventLogError } from "../core/EventLog.ts"
import { ProjectionCatchUp } from "../core/Projection.ts"
import * as PgStats from "./PgStats.ts"
import { AuditQueryError, isUuid, parseTime } from "./Query.ts"
import * as StatsProjection from "./StatsProjection.ts"
import * as StatsRender from "./StatsRender.ts"

/** The breakdowns `--by` selects. */
export const BY = ["type", "agent", "service", "ip", "day", "hour"] as const
/** A breakdown `--by` selects. */
export type By = (typeof BY)[number]

/** The options of a stats query, checked. */
export interface StatsOptions {
  readonly since?: Date
  readonly until?: Date
  /** A workspace id (lowercase); all workspaces when absent. */
  readonly workspace?: string
  /** The breakdown shown alone and at `limit` rows; every section at `PgStats.SECTION_ROWS` rows when absent. */
  readonly by?: By
  readonly limit: number
  /** Source addresses in full rather than masked to /24 or /48. */
  readonly reveal: boolean
}

/** One event named by position, time and type: the first and the last of the window. */
export interface EventRef {
  readonly position: number
  readonly at: string
  readonly type: string
}

/** Events of one type and outcome: `count` is the refusals they stand for (coalesced ones count more than once). */
export interface TypeRow {
  readonly type: string
  readonly outcome: string
  readonly events: number
  readonly count: number
}

/** Refusals of one type for one reason. */
export interface DenialRow {
  readonly type: string
  readonly reason: string | null
  readonly count: number
  readonly events: number
}

/** What went through one service: tunnels opened, bytes relayed by the tunnels closed, refusals. */
export interface ServiceRow {
  readonly id: string
  readonly name: string | null
  readonly tunnels: number
  readonly bytes: number
  readonly denied: number
  readonly events: number
}

/** What one agent did: events, tunnels it opened, bytes they relayed, refusals, token rotations, address changes. */
export interface AgentRow {
  readonly id: string
  readonly label: string | null
  readonly events: number
  readonly tunnels: number
  readonly bytes: number
  readonly denied: number
  readonly rotations: number
  readonly ipChanges: number
}

/** A source address (masked unless revealed): the occurrences it caused, its events, its refusals. */
export interface AddressRow {
  readonly address: string
  readonly count: number
  readonly events: number
  readonly denied: number
}

/** The events of one UTC day. */
export interface DayRow {
  readonly day: string
  readonly events: number
}

/** The events of one UTC hour (`2026-05-01T13`). */
export interface HourRow {
  readonly hour: string
  readonly events: number
}

/** The answer of `--stats`. */
export interface Stats {
  /** The rollups reflect every event up to this position. */
  readonly asOf: number
  /** Start of the first hour counted (inclusive), or null from the beginning. */
  readonly from: string | null
  /** End of the last hour counted (exclusive), or null up to `asOf`. */
  readonly to: string | null
  readonly workspace: string | null
  readonly events: number
  readonly first: EventRef | null
  readonly last: EventRef | null
  readonly byType: ReadonlyArray<TypeRow>
  readonly denials: ReadonlyArray<DenialRow>
  readonly services: ReadonlyArray<ServiceRow>
  readonly agents: ReadonlyArray<AgentRow>
  readonly addresses: ReadonlyArray<AddressRow>
  readonly masked: boolean
  readonly rotations: number
  readonly ipChanges: number
  /** Every day of the window, empty ones included. */
  readonly days: ReadonlyArray<DayRow>
  /** With `--by hour`: every hour of the window (at most a year's, the latest), empty ones included. */
  readonly hours?: ReadonlyArray<HourRow> | undefined
}

/** The stats options as typed. */
export interface RawStatsOptions {
  readonly since?: string | undefined
  readonly until?: string | undefined
  readonly workspace?: string | undefined
  readonly by?: string | undefined
  readonly limit: number
  readonly reveal: boolean
}

const fail = (option: string, message: string) => Either.left(new AuditQueryError({ option, message: `${option}: ${message}` }))

/** The options from what the user typed, or the first value at fault; relative times count back from `now`. */
export const parseOptions = (raw: RawStatsOptions, now: Date): Either.Either<StatsOptions, AuditQueryError> =>
  Either.gen(function*() {
    const since = raw.since === undefined ? undefined : yield* parseTime("--since", raw.since, now)
    const until = raw.until === undefined ? undefined : yield* parseTime("--until", raw.until, now)
    if (since && until && since > until) return yield* fail("--since", "is after --until")
    const workspace = raw.workspace?.trim()
    if (workspace !== undefined && (workspace.length > 64 || !isUuid(workspace))) {
      return yield* fail("--workspace", "is not a workspace id (a UUID)")
    }
    if (raw.by !== undefined && !(BY as ReadonlyArray<string>).includes(raw.by)) {
      return yield* fail("--by", `must be one of ${BY.join(", ")}`)
    }
    if (!Number.isInteger(raw.limit) || raw.limit < 1 || raw.limit > 10_000) {
      return yield* fail("--limit", "must be a whole number from 1 to 10000")
    }
    return {
      limit: raw.limit,
      reveal: raw.reveal,
      ...(since && { since }),
      ...(until && { until }),
      ...(workspace !== undefined && { workspace: workspace.toLowerCase() }),
      ...(raw.by !== undefined && { by: raw.by as By })
    } satisfies StatsOptions
  })

/**
 * Brings the rollups up to the head of the log (a running hub keeps them there; next to a stopped one this replays
 * what it missed), with progress on stderr when it is a terminal; returns the position reached.
 */
export const catchUp = Effect.gen(function*() {
  const runner = yield* ProjectionCatchUp
  const interactive = process.stderr.isTTY === true
  let shown = false
  const reached = yield* runner.run(StatsProjection.projection, {
    onProgress: (position, head) =>
      interactive
        ? Effect.sync(() => {
          shown = true
          process.stderr.write(`\rrolling up the log: ${position} / ${head} events…`)
        })
        : Effect.void
  })
  if (shown) process.stderr.write("\r\x1b[K")
  return reached
})

/** `connect audit --stats`: checks the options, catches the rollups up, and prints the answer (`--json`: one object). */
export const run = (
  raw: RawStatsOptions & { readonly json: boolean }
): Effect.Effect<void, AuditQueryError | EventLogError | SqlError, ProjectionCatchUp | SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const parsed = parseOptions(raw, new Date())
    if (Either.isLeft(parsed)) return yield* parsed.left
    yield* catchUp
    const stats = yield* PgStats.query(parsed.right)
    yield* Console.log(raw.json ? JSON.stringify(StatsRender.toJson(stats), null, 2) : StatsRender.render(stats, parsed.right.by))
  })
