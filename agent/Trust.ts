/**
 * Which CA the agent's commands trust for the hub, besides the system's: `--ca-cert FILE` where a command takes it,
 * else `CONNECT_CA_CERT`, else the agent's copy of the one `connect up --ca-cert` was given (State.paths `ca`: the
 * file the user gave may move or change; the copy is the agent's). Read and checked by every command that talks to the
 * hub; a renewed CA is given to `connect up --ca-cert` again.
 */
import * as Path from "node:path"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { Effect, Option } from "effect"
import * as HubTls from "../transports/HubTls.ts"
import * as State from "./State.ts"

/** `--ca-cert FILE`. */
export const caCertOption = Options.text("ca-cert").pipe(
  Options.optional,
  Options.withDescription(
    `The hub's certificate comes from a private CA: this PEM file holds that CA's certificate (${HubTls.CA_CERT_ENV} if ` +
      "not given). Copied by connect up into the agent's home for later starts; the system's CAs stay trusted."
  )
)

/** The CA file a command uses and how the user named it; undefined for the system's CAs only. */
export const chosen = (
  flag: Option.Option<string>,
  stored: string | undefined,
  env: NodeJS.ProcessEnv = process.env
): { readonly file: string; readonly what: string } | undefined => {
  const given = Option.getOrUndefined(flag)
  if (given !== undefined) return { file: Path.resolve(given), what: `--ca-cert ${given}` }
  const fromEnv = env[HubTls.CA_CERT_ENV]
  if (fromEnv !== undefined && fromEnv !== "") return { file: Path.resolve(fromEnv), what: `${HubTls.CA_CERT_ENV}=${fromEnv}` }
  if (stored !== undefined) return { file: stored, what: `the CA certificate ${stored} (stored by connect up --ca-cert)` }
  return undefined
}

/** The trust of a command whose `--ca-cert` is `flag`, with the agent state of `home` (if any) for the stored CA. */
export const resolve = (flag: Option.Option<string>, home: string = State.home()) =>
  Effect.gen(function*() {
    const state = yield* State.load(home)
    const ca = chosen(flag, Option.getOrUndefined(state)?.caCert)
    return ca === undefined ? {} : yield* HubTls.readCaCert(ca.file, ca.what)
  })

/**
 * What `connect status` shows of the stored CA: the file, and each certificate's subject and SHA-256 fingerprint (a
 * certificate is no secret, but that is all anyone needs to compare it), or why it cannot be read.
 */
export const stored = (state: State.AgentState) =>
  state.caCert === undefined
    ? Effect.succeed(undefined)
    : HubTls.readCaCert(state.caCert, state.caCert).pipe(
      Effect.map((trust) => ({ file: state.caCert!, certificates: HubTls.summarize(trust.ca!.pem) })),
      Effect.catchAll((error) => Effect.succeed({ file: state.caCert!, error: error.message }))
    )

/** Runs `effect` trusting the CA `resolve` finds: its API calls and gateway connection verify the hub with it. */
export const provide = (flag: Option.Option<string> = Option.none(), home?: string) =>
<A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | HubTls.CaCertError | State.StateError, R> =>
  Effect.flatMap(resolve(flag, home), (trust) => Effect.provideService(effect, HubTls.Trust, trust))

/** A command with `--ca-cert` whose handler verifies the hub with the CA `resolve` finds. */
export const trusted = <Name extends string, R, E, A extends { readonly caCert: Option.Option<string> }>(
  self: Command.Command<Name, R, E, A>
) => Command.transformHandler(self, (effect, flags) => provide(flags.caCert)(effect))
