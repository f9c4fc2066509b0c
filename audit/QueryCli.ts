/**
 * `connect audit [filters]`: the investigation listing. Newest first as a table (addresses masked unless
 * --reveal-ips), or --json / --jsonl records carrying the chain fields; --follow prints the last --limit oldest
 * first, then every new event that passes the filters, as it is committed, until Ctrl-C.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { SqlClient } from "@effect/sql"
import { Console, Effect, Either, Layer, Option, Redacted, Stream } from "effect"
import { apiKeyOption } from "../core/ApiKeyOption.ts"
import { EventLog, type EventLogError, type RawEvent } from "../core/EventLog.ts"
import type { SqlError } from "@effect/sql/SqlError"
import type { AuditEvent } from "../core/HubApi.ts"
import type { ProjectionCatchUp } from "../core/Projection.ts"
import * as Table from "../core/Table.ts"
import * as StatsRender from "./StatsRender.ts"
import { GROUPS, groupOf, outcomeOf } from "./Groups.ts"
import { maskData, maskIp, maskMeta } from "../core/Mask.ts"
import * as PgQuery from "./PgQuery.ts"
import * as RemoteQuery from "./RemoteQuery.ts"
import * as HubTls from "../transports/HubTls.ts"
import * as Stats from "./Stats.ts"
import { AuditQueryError, DEFAULT_LIMIT, type Filters, matches, MAX_LIMIT, MAX_RESOLVED, parseFilters, type RawFilters, type Resolved, sourceIpOf } from "./Query.ts"

/** One event as `--json` and `--jsonl` print it. */
export interface AuditRecord {
  readonly position: number
  readonly id: string
  readonly prevHash: string
  readonly hash: string
  readonly type: string
  readonly group: string | null
  readonly outcome: string
  readonly stream: string
  readonly version: number
  readonly workspace: string | null
  readonly recordedAt: string
  readonly data: unknown
  readonly meta: unknown
}

/** A stored event as the API sends it (core/HubApi.ts `AuditEvent`): chain fields as hex, data and meta parsed. */
export const eventOf = (event: RawEvent): AuditEvent => ({
  position: event.position,
  id: event.id,
  stream: event.stream,
  version: event.version,
  workspaceId: event.workspaceId,
  type: event.type,
  recordedAt: event.recordedAt.toISOString(),
  data: JSON.parse(event.dataJson),
  meta: JSON.parse(event.metaJson),
  prevHash: Buffer.from(event.prevHash).toString("hex"),
  hash: Buffer.from(event.hash).toString("hex")
})

/** The record of an event, read locally or through the API; addresses masked unless `reveal`. */
export const recordOf = (event: AuditEvent, reveal: boolean): AuditRecord => ({
  position: event.position,
  id: event.id,
  prevHash: event.prevHash,
  hash: event.hash,
  type: event.type,
  group: groupOf(event.type) ?? null,
  outcome: outcomeOf(event.type, event.data),
  stream: event.stream,
  version: event.version,
  workspace: event.workspaceId,
  recordedAt: event.recordedAt,
  data: reveal ? event.data : maskData(event.data),
  meta: reveal ? event.meta : maskMeta(event.meta)
})

/** The record of a stored event; addresses masked unless `reveal`. */
export const toRecord = (event: RawEvent, reveal: boolean): AuditRecord => recordOf(eventOf(event), reveal)

const short = (id: unknown): string => (typeof id === "string" ? (id.length > 13 ? `${id.slice(0, 8)}…` : id) : "")

/** Who did it: the actor's kind and the head of its id. */
const actorOf = (meta: unknown): string => {
  const actor = (meta as { actor?: { kind?: string; id?: string } }).actor
  return actor?.kind === undefined ? "" : actor.id === undefined ? actor.kind : `${actor.kind}:${short(actor.id)}`
}

/** What it was about: a service by name, else the most specific id the event carries. */
const targetOf = (data: unknown): string => {
  const d = (typeof data === "object" && data !== null ? data : {}) as Record<string, unknown>
  for (const key of ["serviceName", "requestedName"]) if (typeof d[key] === "string") return String(d[key]).slice(0, 40)
  if (typeof d.name === "string" && typeof d.serviceId === "string") return d.name.slice(0, 40)
  const ids: ReadonlyArray<[string, string]> = [
    ["linkId", "link"], ["shareId", "share"], ["serviceId", "service"], ["agentId", "agent"], ["apiKeyId", "apikey"],
    ["workspaceId", "workspace"]
  ]
  for (const [key, kind] of ids) if (typeof d[key] === "string") return `${kind}:${short(d[key])}`
  return ""
}

const HEADER = ["TIME", "POSITION", "TYPE", "ACTOR", "TARGET", "OUTCOME", "SOURCE"]
// Fixed least widths so that --follow's rows, printed one at a time, line up under the header.
const WIDTHS = [20, 8, 17, 15, 17, 7, 15]

/** The table row of a record (its addresses already masked or not). */
const rowOf = (r: AuditRecord): ReadonlyArray<string> => {
  const ip = sourceIpOf(r.data, r.meta)
  const row = [r.recordedAt.slice(0, 19).replace("T", " ") + "Z", String(r.position), r.type, actorOf(r.meta), targetOf(r.data), r.outcome, ip ?? ""]
  // Names an agent asked for, foreign types and actors are anyone's text: no control sequence reaches the terminal.
  return row.map((text) => StatsRender.cell(text, 200))
}

/** The table of records, header first. */
export const formatTable = (records: ReadonlyArray<AuditRecord>): string =>
  Table.format([HEADER, ...records.map(rowOf)], { minWidths: WIDTHS })

const text = (name: string, description: string) =>
  Options.text(name).pipe(Options.optional, Options.withDescription(description))

const options = {
  since: text("since", "Only events at or after this time: 90s, 30m, 2h, 7d, 2w back from now, or 2026-11-30 / 2026-11-30T14:00:00Z (UTC without an offset)."),
  until: text("until", "Only events at or before this time (same forms as --since)."),
  type: text("type", `Only this event type or group (${GROUPS.join(", ")}); several separated by commas.`),
  workspace: text("workspace", "Only events of this workspace id."),
  agent: text("agent", "Only events about or by this agent: its id or its label."),
  service: text("service", "Only events about this service: its id or its name."),
  outcome: Options.choice("outcome", ["allowed", "denied"]).pipe(
    Options.optional,
    Options.withDescription("Only allowed, or only denied events (refused credentials and reach requests, denied share and link access, tunnels whose service could not be connected).")
  ),
  ip: text("ip", "Only events from this source address or prefix: 203.0.113.7, 203.0.113.0/24, 203.0.113.x, 2001:db8::/48."),
  limit: Options.integer("limit").pipe(
    Options.withDefault(DEFAULT_LIMIT),
    Options.withDescription(`The newest N events that pass the filters (default ${DEFAULT_LIMIT}, at most ${MAX_LIMIT}).`)
  ),
  json: Options.boolean("json").pipe(Options.withDescription("Print one JSON array of records.")),
  jsonl: Options.boolean("jsonl").pipe(Options.withDescription("Print one JSON record per line.")),
  follow: Options.boolean("follow").pipe(
    Options.withDescription("Print the last --limit events oldest first, then each new one that passes the filters, until Ctrl-C (table or --jsonl).")
  ),
  revealIps: Options.boolean("reveal-ips").pipe(
    Options.withDescription("Print source addresses in full (masked to /24 or /48 by default).")
  ),
  dataDir: text("data-dir", "The hub's data directory (default $CONNECT_HOME/hub); ignored when DATABASE_URL is set."),
  stats: Options.boolean("stats").pipe(
    Options.withDescription(
      "Print aggregates instead of events, from hourly rollups (caught up to the head first): events by type and outcome, " +
        "denials by reason, services and agents by tunnels and bytes, busiest source addresses, token rotations and " +
        "address changes, first and last event, activity per day. Takes --since, --until (rounded to whole UTC hours), " +
        "--workspace, --by, --limit, --json and --reveal-ips."
    )
  ),
  by: text("by", `With --stats: only this breakdown, at --limit rows (${Stats.BY.join(", ")}); every one at 10 rows without it.`),
  hub: text(
    "hub",
    "Read through this hub's API (https://host[:port]) instead of its database: what --api-key may see (a workspace " +
      "key its own workspace, an operator key every one), each query recorded by the hub; --stats from the hub's " +
      "rollups, as of the position it has followed. Not with --follow."
  ),
  caCert: text(
    "ca-cert",
    "With --hub: a PEM file of the private CA that signed the hub's certificate (CONNECT_CA_CERT if not given); the " +
      "system's CAs stay trusted."
  ),
  apiKey: apiKeyOption("The API key for --hub (pc_…).").pipe(Options.map(Option.map(Redacted.value)))
}

type Flags = Command.Command.ParseConfig<typeof options>

/** Follows the log after `after`: each new event that passes the filters, printed as it comes. */
const follow = (filters: Filters, resolved: Resolved, after: number, print: (r: AuditRecord) => Effect.Effect<void>, reveal: boolean) =>
  Effect.gen(function*() {
    const log = yield* EventLog
    // An agent provisioned under the label while following is followed too (bounded like the first look-up).
    const agentIds = [...resolved.agentIds]
    yield* log.subscribe(after).pipe(
      Stream.runForEach((event) => {
        const data: unknown = JSON.parse(event.dataJson)
        if (
          event.type === "AgentProvisioned" && filters.agent !== undefined && agentIds.length < MAX_RESOLVED &&
          (data as { label?: unknown }).label === filters.agent
        ) agentIds.push((data as { agentId: string }).agentId)
        const passes = matches(filters, { agentIds, serviceIds: resolved.serviceIds }, {
          type: event.type,
          workspaceId: event.workspaceId,
          recordedAt: event.recordedAt,
          data,
          meta: JSON.parse(event.metaJson)
        })
        return passes ? print(toRecord(event, reveal)) : Effect.void
      })
    )
  })

/** The options of `--stats` as typed; any filter it does not take is refused (exit 2). */
const statsOptions = (flags: Flags): Either.Either<Stats.RawStatsOptions, AuditQueryError> => {
  const other = (["type", "agent", "service", "outcome", "ip"] as const).find((k) => Option.isSome(flags[k]))
  if (other !== undefined || flags.jsonl || flags.follow) {
    const option = other ?? (flags.jsonl ? "jsonl" : "follow")
    return Either.left(new AuditQueryError({ option: `--${option}`, message: `--${option} does not go with --stats` }))
  }
  return Either.right({
    since: Option.getOrUndefined(flags.since),
    until: Option.getOrUndefined(flags.until),
    workspace: Option.getOrUndefined(flags.workspace),
    by: Option.getOrUndefined(flags.by),
    limit: flags.limit,
    reveal: flags.revealIps
  })
}

/** `--stats` on the local database. */
const runStats = (flags: Flags) => Effect.flatMap(statsOptions(flags), (raw) => Stats.run({ ...raw, json: flags.json }))

/**
 * `--stats --hub URL`: the options checked here by the same rules (exit 2, nothing sent), the answer from the hub's
 * rollups, printed as the local command prints it.
 */
const runRemoteStats = (flags: Flags, hubUrl: string, apiKey: string) =>
  Effect.gen(function*() {
    const raw = yield* statsOptions(flags)
    const parsed = Stats.parseOptions(raw, new Date())
    if (Either.isLeft(parsed)) return yield* parsed.left
    const stats = yield* RemoteQuery.stats(hubUrl, apiKey, raw)
    yield* Console.log(flags.json ? JSON.stringify(StatsRender.toJson(stats), null, 2) : StatsRender.render(stats, parsed.right.by))
  })

/** The raw filters as typed, for the hub to check by the same rules. */
const rawFilters = (flags: Flags): RawFilters => ({
  since: Option.getOrUndefined(flags.since),
  until: Option.getOrUndefined(flags.until),
  type: Option.getOrUndefined(flags.type),
  workspace: Option.getOrUndefined(flags.workspace),
  agent: Option.getOrUndefined(flags.agent),
  service: Option.getOrUndefined(flags.service),
  outcome: Option.getOrUndefined(flags.outcome),
  ip: Option.getOrUndefined(flags.ip)
})

/** `--hub URL`: the same listing through the hub's API, with `--api-key` or `CONNECT_API_KEY`. */
const runRemote = (flags: Flags, hub: string) =>
  Effect.gen(function*() {
    if (!flags.stats) yield* checked(flags)
    if (flags.follow) return yield* new AuditQueryError({ option: "--follow", message: "--follow reads the hub's database; not with --hub" })
    if (Option.isNone(flags.apiKey)) {
      return yield* new AuditQueryError({ option: "--api-key", message: "--hub needs an API key: set CONNECT_API_KEY (or --api-key)" })
    }
    const hubUrl = yield* RemoteQuery.checkHubUrl(hub)
    const trust = yield* HubTls.resolve(Option.getOrUndefined(flags.caCert))
    if (flags.stats) return yield* runRemoteStats(flags, hubUrl, flags.apiKey.value).pipe(Effect.provideService(HubTls.Trust, trust))
    const events = yield* RemoteQuery.query(hubUrl, flags.apiKey.value, rawFilters(flags), flags.limit).pipe(
      Effect.provideService(HubTls.Trust, trust)
    )
    const records = events.map((e) => recordOf(e, flags.revealIps))
    if (flags.json) return yield* Console.log(JSON.stringify(records, null, 2))
    if (flags.jsonl) return yield* Effect.forEach(records, (r) => Console.log(JSON.stringify(r)), { discard: true })
    return yield* Console.log(formatTable(records))
  })

/** The filters and output flags checked (exit 2 on a bad one), before anything is read. */
const checked = (flags: Flags) =>
  Effect.gen(function*() {
    if (Option.isSome(flags.by)) return yield* new AuditQueryError({ option: "--by", message: "--by goes with --stats" })
    const parsed = parseFilters({ ...rawFilters(flags), limit: flags.limit }, new Date())
    if (Either.isLeft(parsed)) return yield* parsed.left
    if (flags.json && flags.jsonl) return yield* new AuditQueryError({ option: "--json", message: "--json and --jsonl: choose one" })
    if (flags.json && flags.follow) {
      return yield* new AuditQueryError({ option: "--follow", message: "--follow prints a table or --jsonl, not one --json array" })
    }
    return parsed.right
  })

const run = (flags: Flags) =>
  Effect.gen(function*() {
    if (flags.stats) return yield* runStats(flags)
    const filters = yield* checked(flags)
    const log = yield* EventLog
    // The head first, then the events up to it, then the log after it: each event printed once.
    const head = yield* log.head
    const resolved = yield* PgQuery.resolve(filters)
    const events = yield* PgQuery.query(filters, resolved, head.position + 1)
    const records = events.map((e) => toRecord(e, flags.revealIps))
    if (flags.json) return yield* Console.log(JSON.stringify(records, null, 2))
    const shown = flags.follow ? [...records].reverse() : records
    const print = (r: AuditRecord) =>
      flags.jsonl ? Console.log(JSON.stringify(r)) : Console.log(Table.format([rowOf(r)], { minWidths: WIDTHS }))
    if (flags.jsonl) yield* Effect.forEach(shown, print, { discard: true })
    else yield* Console.log(formatTable(shown))
    if (flags.follow) yield* follow(filters, resolved, head.position, print, flags.revealIps)
  })

/**
 * The `connect audit` command reading the hub's log through `logLayer` (bin/connect.ts passes the hub's database
 * and event log: audit/ does not know how they are built).
 */
export const command = <E, R>(
  logLayer: (flags: { dataDir: string | undefined }) => Layer.Layer<EventLog | SqlClient.SqlClient | ProjectionCatchUp, E, R>
) =>
  Command.make("audit", options, (flags): Effect.Effect<
    void,
    AuditQueryError | RemoteQuery.AuditRemoteError | HubTls.CaCertError | EventLogError | SqlError | E,
    R
  > =>
    Option.isSome(flags.hub)
      // Through the hub's API: no database here, so none is opened.
      ? runRemote(flags, flags.hub.value)
      : run(flags).pipe(Effect.provide(logLayer({ dataDir: Option.getOrUndefined(flags.dataDir) })))).pipe(
      Command.withDescription(
        "Investigate the event log: the newest events that pass every filter (applied in the database before " +
          "--limit), as a table with source addresses masked, or --json / --jsonl records with position, id, " +
          "prevHash and hash; --follow goes on with new events. With --hub URL and an API key (CONNECT_API_KEY), " +
          "the same through the hub's API, limited to what the key may read. A bad filter value exits with code 2."
      )
    )
