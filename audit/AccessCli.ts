/**
 * `connect audit access --service NAME --at TIME`: who could reach a service at a moment, folded from the log up to
 * that moment's position (audit/Access.ts, read through audit/PgAccess.ts), as a small report or one --json object;
 * addresses masked unless --reveal-ips.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { SqlClient } from "@effect/sql"
import { Console, Effect, Either, Layer, Option } from "effect"
import * as Table from "../core/Table.ts"
import { type Access, parseQuery } from "./Access.ts"
import { maskIp } from "../core/Mask.ts"
import * as PgAccess from "./PgAccess.ts"

const time = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, "Z")

/** The answer with its agents' addresses masked to /24 or /48 (unless `reveal`). */
export const masked = (access: Access, reveal: boolean): Access =>
  reveal ? access : {
    ...access,
    agents: access.agents.map(({ ip, ...a }) => (ip === undefined ? a : { ...a, ip: maskIp(ip) }))
  }

/** The one-line reason a service could not be reached. */
const why = (access: Access): string => {
  const owner = access.service.agentLabel ?? access.service.agentId
  switch (access.unreachable) {
    case "not_exposed": return "no: the service was not exposed then"
    case "agent_offline": return `no: ${owner}, the agent exposing it, was offline`
    case "agent_revoked": return `no: ${owner}, the agent exposing it, was revoked`
    default: return "yes"
  }
}

const section = (title: string, header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>) =>
  rows.length === 0 ? `${title}: none` : `${title}:\n${Table.format([header, ...rows], { rule: true })}`

/** The report for a terminal. */
export const formatReport = (access: Access): string => {
  const s = access.service
  const lines = [
    `Who could reach ${s.name} at ${time(access.at)}`,
    `as of position ${access.asOf.position} (recorded_at ${access.asOf.recordedAt.toISOString()})`,
    "",
    Table.format([
      ["service", `${s.name} (${s.serviceId})`],
      ["workspace", s.workspaceId ?? "(none)"],
      ["exposed by", `${s.agentLabel ?? "?"} (${s.agentId}), ${s.agentOnline ? "online" : "offline"}`],
      ["target", `${s.target}, ${s.exposed ? "exposed" : "not exposed"} since ${time(s.since)}`],
      ...(s.allow ? [["allow-list", `${s.allow.join(", ")} (limits what it may expose, not who may reach)`]] : []),
      ["reachable", why(access)]
    ]),
    "",
    section(
      "Agents of the workspace online then, not revoked, token valid",
      ["LABEL", "AGENT", "CONNECTED", "ADDRESS", "TRANSPORT", "TOKEN VALID UNTIL"],
      access.agents.map((a) => [
        a.label, a.agentId, a.connectedAt ? time(a.connectedAt) : "", a.ip ?? "", a.transport ?? "", time(a.tokenValidUntil)
      ])
    ),
    "",
    section(
      "Shares valid then",
      ["SHARE", "CREATED", "EXPIRES", "PERMISSIONS"],
      access.shares.map((g) => [g.id, time(g.createdAt), time(g.expiresAt), String(g.detail.permissions)])
    ),
    "",
    section(
      "Public links valid then",
      ["LINK", "CREATED", "EXPIRES", "METHODS", "PATHS", "PER MINUTE"],
      access.links.map((g) => [
        g.id, time(g.createdAt), time(g.expiresAt), String(g.detail.methods), String(g.detail.pathPrefixes),
        String(g.detail.rateLimitPerMinute)
      ])
    )
  ]
  return lines.join("\n")
}

const options = {
  service: Options.text("service").pipe(Options.withDescription("The service: its name, or its id.")),
  at: Options.text("at").pipe(
    Options.withDescription("The moment: 90s, 30m, 2h, 7d, 2w back from now, or 2026-11-30 / 2026-11-30T14:00:00Z (UTC without an offset).")
  ),
  workspace: Options.text("workspace").pipe(
    Options.optional,
    Options.withDescription("The workspace id of the service, when its name is used in several workspaces.")
  ),
  json: Options.boolean("json").pipe(Options.withDescription("Print one JSON object.")),
  revealIps: Options.boolean("reveal-ips").pipe(
    Options.withDescription("Print the agents' addresses in full (masked to /24 or /48 by default).")
  ),
  dataDir: Options.text("data-dir").pipe(
    Options.optional,
    Options.withDescription("The hub's data directory (default $CONNECT_HOME/hub); ignored when DATABASE_URL is set.")
  )
}

type Flags = Command.Command.ParseConfig<typeof options>

const run = (flags: Flags) =>
  Effect.gen(function*() {
    const parsed = parseQuery({ service: flags.service, at: flags.at, workspace: Option.getOrUndefined(flags.workspace) }, new Date())
    if (Either.isLeft(parsed)) return yield* parsed.left
    const access = masked(yield* PgAccess.read(parsed.right), flags.revealIps)
    yield* Console.log(flags.json ? JSON.stringify(access, null, 2) : formatReport(access))
  })

/**
 * The `connect audit access` command reading the hub's database through `logLayer` (bin/connect.ts passes it: audit/
 * does not know how it is built). A bad value exits with 2 (AuditQueryError), an unknown or ambiguous service with 1.
 */
export const command = <E, R>(
  logLayer: (flags: { dataDir: string | undefined }) => Layer.Layer<SqlClient.SqlClient, E, R>
) =>
  Command.make("access", options, (flags) =>
    run(flags).pipe(Effect.provide(logLayer({ dataDir: Option.getOrUndefined(flags.dataDir) })))).pipe(
      Command.withDescription(
        "Who could reach a service at a moment: its workspace's agents that were online then with a valid token, " +
          "and the shares and public links valid then, answered by folding the log up to the last event recorded " +
          "at or before --at (never from today's tables). --json prints one object."
      )
    )
