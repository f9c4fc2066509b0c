/**
 * `connect hub workspace|apikey|agent|service ...`: the hub's admin commands, run offline against the hub's database (next to
 * a running hub they attach to its Postgres). Keys are printed once and stored only as prefix + SHA-256.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { Console, Effect, Layer, Option, Redacted } from "effect"
import { apiKeyOption } from "../../core/ApiKeyOption.ts"
import type { DomainError } from "../../core/DomainError.ts"
import { EventLogError } from "../../core/EventLog.ts"
import { showIp } from "../../core/Mask.ts"
import * as Table from "../../core/Table.ts"
import * as HubTls from "../../transports/HubTls.ts"
import * as Admin from "./Admin.ts"
import * as AdminRemote from "./AdminRemote.ts"
import * as Database from "../db/Database.ts"
import * as HubConfig from "../HubConfig.ts"
import * as Main from "../Main.ts"
import * as Migrations from "../db/Migrations.ts"
import * as PgEventLog from "../eventlog/PgEventLog.ts"

/**
 * The hub's database and event log for admin commands: like `Cli.logLayer`, but with the hub's inline projections,
 * because these commands append and the read models must follow.
 */
export const adminLayer = (dataDir: string | undefined) =>
  Layer.unwrapEffect(
    Effect.map(HubConfig.make({ dataDir }), (config) =>
      PgEventLog.layer({ inline: Main.INLINE_PROJECTIONS }).pipe(
        Layer.provideMerge(Migrations.layer),
        Layer.provideMerge(Database.layer({ dataDir: config.dataDir, databaseUrl: config.databaseUrl, attach: true }))
      )
    )
  )

const dataDir = Options.text("data-dir").pipe(
  Options.optional,
  Options.withDescription("The hub's data directory (default $CONNECT_HOME/hub); ignored when DATABASE_URL is set.")
)
const json = Options.boolean("json").pipe(Options.withDescription("Print JSON instead of a table."))
const revealIps = Options.boolean("reveal-ips").pipe(
  Options.withDescription("Show client addresses in full (default: masked to their /24 or /48; the event log keeps them whole).")
)

const hub = Options.text("hub").pipe(
  Options.optional,
  Options.withDescription(
    "Manage through this hub's API (https://host[:port]) from any machine, with --api-key; CONNECT_HUB_URL is used " +
      "when neither --hub nor --data-dir is given."
  )
)
const apiKey = apiKeyOption(
  "API key for --hub (pc_…): an operator key manages every workspace, a workspace key its own."
).pipe(Options.map(Option.map(Redacted.value)))
const caCert = Options.text("ca-cert").pipe(
  Options.optional,
  Options.withDescription(
    `With --hub: a PEM file of the private CA that signed the hub's certificate (${HubTls.CA_CERT_ENV} if not given); ` +
      "the system's CAs stay trusted."
  )
)
/** Where an admin command runs: the hub's database (`--data-dir`, the default) or a hub's API (`--hub`). */
const where = { dataDir, hub, apiKey, caCert }

type Where = {
  readonly dataDir: Option.Option<string>
  readonly hub: Option.Option<string>
  readonly apiKey: Option.Option<string>
  readonly caCert: Option.Option<string>
}

/** The hub's API to go through: `--hub`, else `CONNECT_HUB_URL` unless `--data-dir` names a local hub; else none. */
const remoteOf = (
  flags: Where
): Effect.Effect<Option.Option<AdminRemote.Remote>, AdminRemote.AdminRemoteError | HubTls.CaCertError> => {
  const env = process.env.CONNECT_HUB_URL
  const url = Option.isSome(flags.hub)
    ? flags.hub
    : Option.isNone(flags.dataDir) && env !== undefined && env !== ""
    ? Option.some(env)
    : Option.none()
  return Option.match(url, {
    onNone: () => Effect.succeedNone,
    onSome: (u) =>
      Effect.map(
        AdminRemote.remote(u, Option.getOrUndefined(flags.apiKey), process.env, Option.getOrUndefined(flags.caCert)),
        Option.some
      )
  })
}

/** `remote` through the hub's API when `flags` name one, else `local` on the hub's database. */
const either = <A1, E1, A2, E2, R>(
  flags: Where,
  remote: (r: AdminRemote.Remote) => Effect.Effect<A1, E1>,
  local: () => Effect.Effect<A2, E2, R>
): Effect.Effect<A1 | A2, E1 | E2 | AdminRemote.AdminRemoteError | HubTls.CaCertError, R> =>
  Effect.flatMap(remoteOf(flags), (r): Effect.Effect<A1 | A2, E1 | E2, R> => Option.isSome(r) ? remote(r.value) : local())

/** Runs an admin effect on the hub's database; a refused command reads as `connect: <why>` with exit code 1. */
const run = <A, E extends { readonly message: string }, R extends Layer.Layer.Success<ReturnType<typeof adminLayer>>>(
  flags: { readonly dataDir: Option.Option<string> },
  effect: Effect.Effect<A, E | DomainError, R>
) =>
  effect.pipe(
    Effect.catchTag("DomainError", (e) => Effect.fail(new EventLogError({ reason: "Rejected", message: e.message }))),
    Effect.provide(adminLayer(Option.getOrUndefined(flags.dataDir)))
  )

const workspaceCreate = Command.make(
  "create",
  { name: Args.text({ name: "NAME" }).pipe(Args.withDescription("Name of the workspace.")), ...where },
  (flags) =>
    either(
      flags,
      (r) => Effect.map(AdminRemote.createWorkspace(r, flags.name), (w) => ({ workspaceId: w.workspaceId, apiKey: w.apiKey })),
      () => run(flags, Admin.createWorkspace(flags.name))
    ).pipe(
      Effect.flatMap((w) =>
        Console.log(
          `created workspace "${flags.name.trim()}" ${w.workspaceId}\n` +
            `admin API key (shown once, store it now):\n\n    ${w.apiKey.key}\n`
        )
      )
    )
).pipe(Command.withDescription("Create a workspace; prints its id and its first admin API key, once."))

/** `connect hub workspace create NAME`. */
export const workspace = Command.make("workspace").pipe(
  Command.withDescription("Manage workspaces."),
  Command.withSubcommands([workspaceCreate])
)

const workspaceId = Options.text("workspace").pipe(Options.withDescription("Workspace id."))

const apikeyCreate = Command.make(
  "create",
  {
    workspace: workspaceId,
    name: Options.text("name").pipe(Options.withDefault("admin"), Options.withDescription("Name of the key (default admin).")),
    scope: Options.choice("scope", ["workspace", "operator"]).pipe(
      Options.withDefault("workspace" as const),
      Options.withDescription(
        "workspace (default): the key reads and manages its own workspace only (the log through row-level security); " +
          "operator: the key reads every workspace's log, hub-level events included."
      )
    ),
    ...where
  },
  (flags) =>
    either(
      flags,
      (r) => AdminRemote.createApiKey(r, flags.workspace, flags.name, flags.scope),
      () => run(flags, Admin.createApiKey(flags.workspace, flags.name, flags.scope))
    ).pipe(
      Effect.flatMap((k) =>
        Console.log(`created ${k.scope} API key ${k.apiKeyId} (${k.prefix}…) — shown once, store it now:\n\n    ${k.key}\n`)
      )
    )
).pipe(Command.withDescription("Issue an API key for a workspace; prints the key once (the hub keeps only its SHA-256)."))

const apikeyList = Command.make("list", { workspace: workspaceId, json, ...where }, (flags) =>
  either(
    flags,
    (r) => AdminRemote.listApiKeys(r, flags.workspace),
    () => run(flags, Admin.listApiKeys(flags.workspace))
  ).pipe(
    Effect.flatMap((keys) =>
      flags.json
        ? Console.log(JSON.stringify(keys))
        : Console.log(
          keys.length === 0
            ? "no API keys"
            : Table.format([
              ["ID", "PREFIX", "NAME", "SCOPE", "CREATED", "REVOKED"],
              ...keys.map((k) => [k.apiKeyId, `${k.prefix}…`, k.name, k.scope, k.createdAt, k.revokedAt ?? "-"])
            ])
        )
    )
  )).pipe(Command.withDescription("List a workspace's API keys: id, prefix, name, scope, created, revoked (never the key)."))

const apikeyRevoke = Command.make(
  "revoke",
  { id: Args.text({ name: "ID" }).pipe(Args.withDescription("API key id.")), ...where },
  (flags) =>
    either(flags, (r) => AdminRemote.revokeApiKey(r, flags.id), () => run(flags, Admin.revokeApiKey(flags.id))).pipe(
      Effect.flatMap((r) => Console.log(r.revoked ? `revoked API key ${flags.id}` : `API key ${flags.id} was already revoked`))
    )
).pipe(Command.withDescription("Revoke an API key; it is refused from then on."))

/** `connect hub apikey create|list|revoke`. */
export const apikey = Command.make("apikey").pipe(
  Command.withDescription("Manage API keys."),
  Command.withSubcommands([apikeyCreate, apikeyList, apikeyRevoke])
)

const agentRevoke = Command.make(
  "revoke",
  {
    id: Args.text({ name: "ID" }).pipe(Args.withDescription("Agent id.")),
    reason: Options.text("reason").pipe(Options.optional, Options.withDescription("Why, for the audit log.")),
    ...where
  },
  (flags) =>
    either(
      flags,
      (r) => AdminRemote.revokeAgent(r, flags.id, Option.getOrUndefined(flags.reason)),
      () => run(flags, Admin.revokeAgent(flags.id, Option.getOrUndefined(flags.reason)))
    ).pipe(
      Effect.flatMap((r) =>
        Console.log(
          (r.revoked ? `revoked agent ${flags.id}: its tokens are refused from now on` : `agent ${flags.id} was already revoked`) +
            (r.released.length > 0 ? `\nreleased its services: ${r.released.join(", ")}` : "")
        )
      )
    )
).pipe(
  Command.withDescription(
    "Revoke an agent's tokens (AgentTokenRevoked) and release its service names (ServiceReleased); later connections " +
      "are refused and audited."
  )
)

const agentAllow = Command.make(
  "allow",
  {
    id: Args.text({ name: "ID" }).pipe(Args.withDescription("Agent id.")),
    allow: Options.text("allow").pipe(
      Options.optional,
      Options.withDescription(
        "Comma-separated targets the agent may expose: addresses, CIDR ranges, host names, *.domain " +
          "(e.g. 10.0.0.0/8,db.internal). Cloud metadata addresses (169.254.169.254) must be named themselves."
      )
    ),
    any: Options.boolean("any").pipe(Options.withDescription("Clear the list: anything but cloud metadata addresses.")),
    dataDir
  },
  (flags) =>
    Effect.gen(function*() {
      if (flags.any === Option.isSome(flags.allow)) {
        return yield* new EventLogError({ reason: "Rejected", message: "give either --allow LIST or --any" })
      }
      const allow = Option.map(flags.allow, (list) => list.split(","))
      const { changed } = yield* run(flags, Admin.setAllowList(flags.id, Option.getOrUndefined(allow)))
      const what = Option.match(allow, { onNone: () => "anything but cloud metadata addresses", onSome: (l) => l.join(",") })
      return yield* Console.log(`${changed ? "agent" : "unchanged: agent"} ${flags.id} may expose ${what}`)
    })
).pipe(
  Command.withDescription(
    "Set which targets an agent may expose (AgentAllowListSet), checked by the hub on every expose; --any clears it."
  )
)

const agentList = Command.make("list", {
  json,
  revealIps,
  workspace: Options.text("workspace").pipe(
    Options.optional,
    Options.withDescription("Only this workspace's agents (needed with --hub: a key lists one workspace at a time).")
  ),
  ...where
}, (flags) =>
  either(
    flags,
    (r) =>
      Option.match(flags.workspace, {
        onNone: () =>
          Effect.fail(
            new AdminRemote.AdminRemoteError({ reason: "Invalid", message: "with --hub, name the workspace: --workspace ID" })
          ),
        onSome: (workspaceId) =>
          Effect.map(AdminRemote.listAgents(r, workspaceId), (agents) =>
            agents.map((a): Admin.AgentListing => ({
              agentId: a.agentId,
              workspaceId,
              label: a.label,
              online: a.online,
              lastIp: a.lastIp,
              tokenExpiresAt: a.tokenExpiresAt,
              revokedAt: a.revoked ? "revoked" : null,
              // The API does not say; shown as "-".
              exposeAllow: undefined
            })))
      }),
    () =>
      run(flags, Admin.listAgents()).pipe(
        Effect.map((agents) =>
          Option.match(flags.workspace, {
            onNone: () => agents as ReadonlyArray<Admin.AgentListing>,
            onSome: (w) => agents.filter((a) => a.workspaceId === w.toLowerCase())
          })
        )
      )
  ).pipe(
    Effect.map((agents) => agents.map((a) => ({ ...a, lastIp: showIp(a.lastIp, flags.revealIps) }))),
    Effect.flatMap((agents) =>
      flags.json
        ? Console.log(JSON.stringify(agents))
        : Console.log(
          agents.length === 0
            ? "no agents"
            : Table.format([
              ["ID", "WORKSPACE", "LABEL", "STATUS", "LAST IP", "TOKEN EXPIRES", "ALLOW"],
              ...agents.map((a) => [
                a.agentId,
                a.workspaceId,
                a.label,
                a.revokedAt ? "revoked" : a.online ? "online" : "offline",
                a.lastIp ?? "-",
                a.tokenExpiresAt,
                a.exposeAllow === undefined ? "-" : a.exposeAllow?.join(",") ?? "any"
              ])
            ])
        )
    )
  )).pipe(Command.withDescription("List every agent of every workspace (last addresses masked unless --reveal-ips)."))

/** `connect hub agent revoke|allow|list`. */
export const agent = Command.make("agent").pipe(
  Command.withDescription("Manage agents."),
  Command.withSubcommands([agentRevoke, agentAllow, agentList])
)

const serviceRelease = Command.make(
  "release",
  { name: Args.text({ name: "NAME" }).pipe(Args.withDescription("Service name.")), workspace: workspaceId, dataDir },
  (flags) =>
    run(flags, Admin.releaseService(flags.workspace, flags.name)).pipe(
      Effect.flatMap((r) =>
        Console.log(`released service ${flags.name} from agent ${r.releasedFrom}: any agent of the workspace may expose it now`)
      )
    )
).pipe(
  Command.withDescription(
    "Free a service name held by an agent, online or not (ServiceReleased); a name otherwise stays with the agent " +
      "that exposed it until that agent unexposes it or is revoked."
  )
)

/** `connect hub service release`. */
export const service = Command.make("service").pipe(
  Command.withDescription("Manage service names."),
  Command.withSubcommands([serviceRelease])
)

/** The admin subcommands of `connect hub`. */
export const commands = [workspace, apikey, agent, service] as const
