/**
 * The agent's state file, `CONNECT_HOME/agent.json`: its hub, identity and token, chosen transport and label, and
 * the exposures and reaches it restores after a restart (with a stable local port per reached service). Mode 0600,
 * replaced atomically so a crash never leaves a half-written token behind.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Effect, Option, Schema } from "effect"
import { messageOf } from "../core/ErrorMessage.ts"

/** A local target published under a service name. */
export const Exposure = Schema.Struct({
  name: Schema.String,
  host: Schema.String,
  port: Schema.Number.pipe(Schema.int(), Schema.between(1, 65535))
})

/** A local target published under a service name. */
export type Exposure = typeof Exposure.Type

/** Everything the agent keeps between runs. */
export const AgentState = Schema.Struct({
  /** Hub base URL as the user gave it (`https://hub.example.com`). */
  hubUrl: Schema.String,
  agentId: Schema.String,
  workspaceId: Schema.String,
  /** Agent token (64 hex chars); never printed or logged. */
  token: Schema.String,
  /** ISO expiry of the token, as the hub reported it. */
  tokenExpiresAt: Schema.optional(Schema.String),
  /** Transport plugin name (`ws` or `msgpack`). */
  transport: Schema.String,
  /**
   * Absolute path of the CA certificate the hub's is verified with, besides the system's: the agent's own copy
   * (`paths(home).ca`, written by `connect up --ca-cert`); an older build stored the path the user gave.
   */
  caCert: Schema.optional(Schema.String),
  label: Schema.optional(Schema.String),
  exposures: Schema.Array(Exposure),
  /** Local port per reached service name, kept so a name keeps its port across restarts. */
  reaches: Schema.Record({ key: Schema.String, value: Schema.Number.pipe(Schema.int(), Schema.between(1, 65535)) })
})

/** Everything the agent keeps between runs. */
export type AgentState = typeof AgentState.Type

/** Why the state file could not be read or written. */
export class StateError extends Schema.TaggedError<StateError>()("StateError", {
  reason: Schema.Literal("Read", "Write", "Corrupt"),
  message: Schema.String
}) {}

/** The agent's home directory: `CONNECT_HOME`, else `~/.connect`. */
export const home = (env: NodeJS.ProcessEnv = process.env): string =>
  env.CONNECT_HOME !== undefined && env.CONNECT_HOME !== "" ? Path.resolve(env.CONNECT_HOME) : Path.join(Os.homedir(), ".connect")

/** The files of an agent home. */
export const paths = (dir: string) => ({
  state: Path.join(dir, "agent.json"),
  socket: Path.join(dir, "agent.sock"),
  log: Path.join(dir, "agent.log"),
  pid: Path.join(dir, "agent.pid"),
  /** The copy of the CA certificate given to `connect up --ca-cert` (mode 0600): a file the user moves stays trusted. */
  ca: Path.join(dir, "hub-ca.pem")
})

const decode = Schema.decodeUnknownEither(Schema.parseJson(AgentState))

/** Reads the state file; `None` when the agent was never provisioned here. */
export const load = (dir: string): Effect.Effect<Option.Option<AgentState>, StateError> =>
  Effect.suspend(() => {
    const file = paths(dir).state
    let text: string
    try {
      text = Fs.readFileSync(file, "utf8")
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return Effect.succeedNone
      return Effect.fail(new StateError({ reason: "Read", message: `cannot read ${file}: ${messageOf(error)}` }))
    }
    const decoded = decode(text)
    return decoded._tag === "Right"
      ? Effect.succeedSome(decoded.right)
      // The parse error would quote the file, token included; name the file only.
      : Effect.fail(new StateError({ reason: "Corrupt", message: `${file} is not a valid agent state file` }))
  })

/**
 * Writes the state file atomically: a temporary file in the same directory (mode 0600, fsynced) renamed over the
 * old one, then the directory fsynced, so readers see the old or the new file and never a partial one.
 */
export const save = (dir: string, state: AgentState): Effect.Effect<void, StateError> =>
  writeAtomically(dir, paths(dir).state, JSON.stringify(state, null, 2) + "\n", "the agent state")

/** Writes `pem` (a CA certificate, checked) to the agent's copy, as `save` writes the state; its path. */
export const saveCaCert = (dir: string, pem: string): Effect.Effect<string, StateError> =>
  Effect.as(writeAtomically(dir, paths(dir).ca, pem.endsWith("\n") ? pem : `${pem}\n`, "the CA certificate"), paths(dir).ca)

const writeAtomically = (dir: string, file: string, text: string, what: string): Effect.Effect<void, StateError> =>
  Effect.try({
    try: () => {
      Fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
      const tmp = `${file}.${process.pid}.${Date.now()}.tmp`
      const fd = Fs.openSync(tmp, "wx", 0o600)
      try {
        // The umask only removes bits, but a pre-existing ACL default could add some: set the mode explicitly.
        Fs.fchmodSync(fd, 0o600)
        Fs.writeSync(fd, text)
        Fs.fsyncSync(fd)
      } finally {
        Fs.closeSync(fd)
      }
      try {
        Fs.renameSync(tmp, file)
      } catch (error) {
        Fs.rmSync(tmp, { force: true })
        throw error
      }
      const dirFd = Fs.openSync(dir, "r")
      try {
        Fs.fsyncSync(dirFd)
      } finally {
        Fs.closeSync(dirFd)
      }
    },
    catch: (error) => new StateError({ reason: "Write", message: `cannot write ${what} in ${dir}: ${messageOf(error)}` })
  })

/**
 * Reads, changes and writes the state in one go, so a writer never puts back a stale token another process (e.g.
 * `connect up --rotate-token` next to a running agent) has just stored. Fails with "Read" when there is no state.
 */
export const update = (dir: string, f: (state: AgentState) => AgentState): Effect.Effect<AgentState, StateError> =>
  Effect.flatMap(load(dir), (current) =>
    Option.match(current, {
      onNone: () => Effect.fail(new StateError({ reason: "Read", message: `no agent state in ${dir}` })),
      onSome: (state) => {
        const next = f(state)
        return Effect.as(save(dir, next), next)
      }
    }))

/** The running agent's copy of its state: read at any time, changed only together with the file. */
export interface Held {
  /** The state as last read or written. */
  readonly get: () => AgentState
  /** Keeps a state just read from the file. */
  readonly set: (state: AgentState) => void
  /** `update`s the file and keeps what was written. */
  readonly update: (f: (state: AgentState) => AgentState) => Effect.Effect<AgentState, StateError>
}

/** The copy of the state in `dir`, starting from `initial`. */
export const hold = (dir: string, initial: AgentState): Held => {
  let state = initial
  return {
    get: () => state,
    set: (next) => {
      state = next
    },
    update: (f) =>
      Effect.map(update(dir, f), (next) => {
        state = next
        return next
      })
  }
}

/** The state with `exposure` added, replacing one of the same name. */
export const withExposure = (state: AgentState, exposure: Exposure): AgentState => ({
  ...state,
  exposures: [...state.exposures.filter((e) => e.name !== exposure.name), exposure]
})

/** The state without the exposure `name`. */
export const withoutExposure = (state: AgentState, name: string): AgentState => ({
  ...state,
  exposures: state.exposures.filter((e) => e.name !== name)
})

/** The state with service `name` reached on local `port`. */
export const withReach = (state: AgentState, name: string, port: number): AgentState => ({
  ...state,
  reaches: { ...state.reaches, [name]: port }
})

/** The state without the reach of `name`. */
export const withoutReach = (state: AgentState, name: string): AgentState => {
  const { [name]: _, ...reaches } = state.reaches
  return { ...state, reaches }
}

/** The local port to bind for a reach of `name`: the one asked for, else the one it had before, else 0 (any). */
export const reachPort = (state: AgentState, name: string, requested?: number): number =>
  requested !== undefined && requested > 0 ? requested : state.reaches[name] ?? 0
