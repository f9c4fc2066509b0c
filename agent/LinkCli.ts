/**
 * `connect link create|list|revoke`: public HTTP links onto a service, through the hub's API with an API key
 * (`--api-key` or `CONNECT_API_KEY`) at `--hub` (default: this agent's hub). A link's URL and token are printed once,
 * by `create`; the hub keeps only the token's SHA-256. Options are checked here first (exit 2, nothing sent).
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import { Effect, Either, Option, Schema } from "effect"
import { ServiceName } from "../core/Events.ts"
import * as LinkRules from "../core/LinkRules.ts"
import * as Table from "../core/Table.ts"
import { hubOption, target, workspaceKeyOption } from "./ApiTarget.ts"
import * as HubApi from "./HubApi.ts"
import * as Trust from "./Trust.ts"

const out = (line: string) => Effect.sync(() => console.log(line))

const json = Options.boolean("json").pipe(Options.withDescription("Print the result as JSON."))

/** A rule's `Either` as an option check: its message, exit 2. */
const checked = <A>(result: Either.Either<A, string>): Effect.Effect<A, ValidationError.ValidationError> =>
  Either.isRight(result) ? Effect.succeed(result.right) : Effect.fail(ValidationError.invalidValue(HelpDoc.p(result.left)))

const isName = Schema.is(ServiceName)

const create = Command.make(
  "create",
  {
    name: Args.text({ name: "NAME" }).pipe(
      Args.mapEffect((value) =>
        isName(value)
          ? Effect.succeed(value)
          : Effect.fail(HelpDoc.p(`'${String(value).slice(0, 80)}' is not a service name: a letter or digit, then up to 62 letters, digits, '.', '_' or '-'`))
      ),
      Args.withDescription("The service the link opens onto (one of the workspace's: see connect services).")
    ),
    expires: Options.text("expires").pipe(
      Options.mapEffect((t: string) => checked(LinkRules.parseExpires(t)).pipe(Effect.as(t))),
      Options.optional,
      Options.withDescription("Lifetime: 30d (the default), 12h, 90m, 45s or 2w; at most 365d. After it the link answers 410.")
    ),
    methods: Options.text("methods").pipe(
      Options.mapEffect((t: string) => checked(LinkRules.parseMethods(t))),
      Options.optional,
      Options.withDescription("Methods allowed, comma-separated (default GET,HEAD); any other is answered 405.")
    ),
    paths: Options.text("paths").pipe(
      Options.mapEffect((t: string) => checked(LinkRules.parsePaths(t))),
      Options.optional,
      Options.withDescription(
        "Path prefixes allowed, comma-separated (default /: everything), e.g. /api/v1,/health; checked on the normalised " +
          "path (no .., no //, no encoded slashes or dots), anything else is answered 403 or 400."
      )
    ),
    rateLimit: Options.text("rate-limit").pipe(
      Options.mapEffect((t: string) => checked(LinkRules.parseRate(t)).pipe(Effect.as(t))),
      Options.optional,
      Options.withDescription(`Requests per client address: 100/min, 10/s, 1000/hour (default ${LinkRules.DEFAULT_RATE_PER_MINUTE}/min); beyond, 429.`)
    ),
    hub: hubOption,
    apiKey: workspaceKeyOption,
    caCert: Trust.caCertOption,
    json
  },
  (flags) =>
    Effect.gen(function*() {
      const { apiKey, hubUrl } = yield* target(flags, "link commands")
      const link = yield* HubApi.createLink(hubUrl, apiKey, {
        service: flags.name,
        ...Option.match(flags.expires, { onNone: () => ({}), onSome: (expires) => ({ expires }) }),
        ...Option.match(flags.methods, { onNone: () => ({}), onSome: (methods) => ({ methods: [...methods] }) }),
        ...Option.match(flags.paths, { onNone: () => ({}), onSome: (paths) => ({ paths: [...paths] }) }),
        ...Option.match(flags.rateLimit, { onNone: () => ({}), onSome: (rateLimit) => ({ rateLimit }) })
      })
      if (flags.json) return yield* out(JSON.stringify(link))
      return yield* out([
        link.url,
        ...(link.domainUrl === null ? [] : [link.domainUrl]),
        `link ${link.linkId} onto ${link.service}: ${link.methods.join(",")} under ${link.paths.join(",")}, ` +
        `${link.rateLimitPerMinute}/min per address, until ${link.expiresAt}`,
        "the URL is shown this once: the hub keeps only a hash of its token"
      ].join("\n"))
    })
).pipe(Trust.trusted, Command.withDescription("Create a public HTTP link onto a service; prints its URL once."))

const list = Command.make("list", { hub: hubOption, apiKey: workspaceKeyOption, caCert: Trust.caCertOption, json }, (flags) =>
  Effect.gen(function*() {
    const { apiKey, hubUrl } = yield* target(flags, "link commands")
    const links = yield* HubApi.listLinks(hubUrl, apiKey)
    if (flags.json) return yield* out(JSON.stringify({ links }))
    if (links.length === 0) return yield* out("no links in this workspace")
    return yield* out(Table.format([
      ["ID", "SERVICE", "STATUS", "EXPIRES", "METHODS", "PATHS", "RATE"],
      ...links.map((l) => [l.linkId, l.service, l.status, l.expiresAt, l.methods.join(","), l.paths.join(","), `${l.rateLimitPerMinute}/min`])
    ]))
  })).pipe(Trust.trusted, Command.withDescription("List the workspace's public links, never their URLs (those were shown once)."))

const revoke = Command.make(
  "revoke",
  { id: Args.text({ name: "ID" }).pipe(Args.withDescription("The link's id (see connect link list).")), hub: hubOption, apiKey: workspaceKeyOption, caCert: Trust.caCertOption, json },
  (flags) =>
    Effect.gen(function*() {
      const { apiKey, hubUrl } = yield* target(flags, "link commands")
      const revoked = yield* HubApi.revokeLink(hubUrl, apiKey, flags.id)
      if (flags.json) return yield* out(JSON.stringify(revoked))
      return yield* out(`link ${revoked.linkId} revoked at ${revoked.revokedAt}; its URL answers 410 from now on`)
    })
).pipe(Trust.trusted, Command.withDescription("Revoke a public link at once: its URL answers 410 from then on."))

const link: Command.Command<"link", never, ValidationError.ValidationError, {}> = Command.make("link", {}, () =>
  Effect.fail(ValidationError.helpRequested(command.descriptor))).pipe(
    Command.withDescription("Public HTTP links onto services: create, list, revoke (with an API key).")
  )

/** `connect link` with its subcommands. */
export const command = link.pipe(Command.withSubcommands([create, list, revoke]))
