/**
 * The running agent's control socket, `CONNECT_HOME/agent.sock`: a unix socket speaking JSON lines, one request and
 * one response per line, through which `connect expose/unexpose/reach/unreach/status` (and `reach --check`) act on the agent that owns the hub
 * connection and the reach listeners.
 */
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Readline from "node:readline"
import { Duration, Effect, Either, ParseResult, Schema } from "effect"
import type { Scope } from "effect"
import { messageOf } from "../core/ErrorMessage.ts"

const text = (max: number) =>
  Schema.String.pipe(Schema.maxLength(max)).annotations({
    message: () => ({ message: `expected text of at most ${max} characters`, override: true })
  })

const port = (min: 0 | 1) =>
  Schema.Int.pipe(Schema.between(min, 65535)).annotations({
    message: () => ({ message: `expected a port: an integer in ${min}-65535`, override: true })
  })

/**
 * Each operation's request, checked when it arrives so that nothing malformed reaches the agent: 253 characters is
 * the longest DNS name (the hub checks names and hosts fully); a reach port of 0 asks for a stable free port.
 */
const requests = {
  status: Schema.Struct({ op: Schema.Literal("status") }),
  expose: Schema.Struct({ op: Schema.Literal("expose"), name: text(253), host: text(253), port: port(1) }),
  unexpose: Schema.Struct({ op: Schema.Literal("unexpose"), name: text(253) }),
  reach: Schema.Struct({ op: Schema.Literal("reach"), name: text(253), port: Schema.optional(port(0)) }),
  unreach: Schema.Struct({ op: Schema.Literal("unreach"), name: text(253) }),
  check: Schema.Struct({ op: Schema.Literal("check"), name: text(253) })
} as const

/** A request to the running agent. */
export type Request = (typeof requests)[keyof typeof requests]["Type"]

const decoders = Object.fromEntries(
  Object.entries(requests).map(([op, schema]) => [op, Schema.decodeUnknownEither(schema as Schema.Schema<Request>)])
)

/** Decodes one request line, or says in one line why it is not a request. */
export const decodeRequest = (line: string): Either.Either<Request, string> => {
  let value: unknown
  try {
    value = JSON.parse(line)
  } catch {
    return Either.left("not JSON")
  }
  const op = typeof value === "object" && value !== null ? (value as { op?: unknown }).op : undefined
  const decode = typeof op === "string" && Object.hasOwn(decoders, op) ? decoders[op]! : undefined
  if (decode === undefined) return Either.left(`unknown operation; expected one of ${Object.keys(requests).join(", ")}`)
  return Either.mapLeft(decode(value), (error) =>
    `invalid ${op} request: ` +
    ParseResult.ArrayFormatter.formatErrorSync(error).map((i) => `${i.path.join(".")}: ${i.message}`).join("; "))
}

/** The first line of an unexpected failure's message, without the stack a defect carries. */
const internal = (error: unknown): string => {
  return messageOf(error).split("\n")[0]!.slice(0, 300)
}

/** The agent's answer: a result, or an error with a stable code and a message for the user. */
export type Response =
  | { readonly ok: true; readonly result: unknown }
  | { readonly ok: false; readonly error: { readonly code: string; readonly message: string } }

/** A refusal of an operation: its stable `code` (else its `reason`) and message go back to the client. */
export interface Refusal {
  readonly reason: string
  readonly code?: string | undefined
  readonly message: string
}

/** What the control socket acts on: the running agent's operations. */
export interface Operations {
  readonly status: () => unknown
  readonly expose: (name: string, host: string, port: number) => Effect.Effect<unknown, Refusal>
  readonly unexpose: (name: string) => Effect.Effect<unknown, Refusal>
  readonly reach: (name: string, port?: number) => Effect.Effect<unknown, Refusal>
  readonly unreach: (name: string) => Effect.Effect<unknown, Refusal>
  readonly check: (name: string) => Effect.Effect<unknown, Refusal>
}

const answer = (effect: Effect.Effect<unknown, Refusal>): Promise<Response> =>
  Effect.runPromise(
    effect.pipe(
      Effect.map((result): Response => ({ ok: true, result })),
      Effect.catchAll((e) => Effect.succeed<Response>({ ok: false, error: { code: e.code ?? e.reason, message: e.message } }))
    )
  )

/** The handler `serve` needs: each request run as the operation it names. */
export const handler = (operations: Operations) => (request: Request): Promise<Response> => {
  switch (request.op) {
    case "status":
      return Promise.resolve({ ok: true, result: operations.status() })
    case "expose":
      return answer(operations.expose(request.name, request.host, request.port))
    case "unexpose":
      return answer(operations.unexpose(request.name))
    case "reach":
      return answer(operations.reach(request.name, request.port))
    case "unreach":
      return answer(operations.unreach(request.name))
    case "check":
      return answer(operations.check(request.name))
    default:
      return Promise.resolve({ ok: false, error: { code: "BadRequest", message: "unknown operation" } })
  }
}

/** Why talking over the control socket failed. */
export class ControlError extends Schema.TaggedError<ControlError>()("ControlError", {
  /**
   * "NotRunning": nobody listens on the socket; "AlreadyRunning": another agent owns it; "Failed": the agent
   * answered with an error (see `code`); "Broken": the exchange itself failed.
   */
  reason: Schema.Literal("NotRunning", "AlreadyRunning", "Failed", "Broken"),
  message: Schema.String,
  code: Schema.optional(Schema.String)
}) {}

/** Time a client waits for the agent's answer; an `expose` or `reach` waits for one hub round trip at most. */
export const REQUEST_TIMEOUT_MS = 30_000

const probe = (path: string): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = Net.connect(path)
    socket.once("connect", () => {
      socket.destroy()
      resolve(true)
    })
    socket.once("error", () => resolve(false))
  })

/**
 * Serves `handle` on the socket at `path` until the scope closes (then the socket file is removed). A socket file
 * left by a dead agent is replaced; one a live agent answers on fails with "AlreadyRunning".
 */
export const serve = (
  path: string,
  handle: (request: Request) => Promise<Response>
): Effect.Effect<void, ControlError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      if (Fs.existsSync(path)) {
        if (yield* Effect.promise(() => probe(path))) {
          return yield* new ControlError({
            reason: "AlreadyRunning",
            message: `an agent is already running for this CONNECT_HOME (${path}); stop it first, or use another CONNECT_HOME`
          })
        }
        Fs.rmSync(path, { force: true })
      }
      const server = Net.createServer((socket) => {
        socket.on("error", () => {})
        const lines = Readline.createInterface({ input: socket })
        lines.on("error", () => {})
        const reply = (response: Response) => socket.write(JSON.stringify(response) + "\n")
        lines.on("line", (line) => {
          const request = decodeRequest(line)
          if (Either.isLeft(request)) return reply({ ok: false, error: { code: "BadRequest", message: request.left } })
          handle(request.right).then(reply, (error: unknown) =>
            reply({ ok: false, error: { code: "Internal", message: internal(error) } }))
        })
      })
      yield* Effect.async<void, ControlError>((resume) => {
        server.once("error", (error) =>
          resume(Effect.fail(new ControlError({ reason: "Broken", message: `cannot listen on ${path}: ${error.message}` }))))
        server.listen(path, () => resume(Effect.void))
      })
      // Only this user may drive the agent (it can publish local ports to the workspace).
      Fs.chmodSync(path, 0o600)
      return server
    }),
    (server) =>
      Effect.async<void>((resume) => {
        server.close(() => resume(Effect.void))
        Fs.rmSync(path, { force: true })
        // Clients mid-request are not waited for: their agent is going away. A plain timer: this is a finalizer, where
        // a race against Effect's clock would wait for the very close it is meant to cut short.
        setTimeout(() => resume(Effect.void), 200)
      })
  ).pipe(Effect.asVoid)

/** Sends one request to the agent listening at `path` and returns its result; fails "NotRunning" if none listens. */
export const request = (
  path: string,
  req: Request,
  timeout: Duration.DurationInput = REQUEST_TIMEOUT_MS
): Effect.Effect<unknown, ControlError> =>
  Effect.async<unknown, ControlError>((resume) => {
    const socket = Net.connect(path)
    let done = false
    const finish = (effect: Effect.Effect<unknown, ControlError>) => {
      if (done) return
      done = true
      socket.destroy()
      resume(effect)
    }
    socket.once("error", (error: NodeJS.ErrnoException) =>
      finish(
        Effect.fail(
          error.code === "ENOENT" || error.code === "ECONNREFUSED"
            ? new ControlError({ reason: "NotRunning", message: "no agent is running" })
            : new ControlError({ reason: "Broken", message: `cannot talk to the agent at ${path}: ${error.message}` })
        )
      ))
    socket.once("connect", () => socket.write(JSON.stringify(req) + "\n"))
    const lines = Readline.createInterface({ input: socket })
    // Readline re-emits the socket's errors; the socket's own listener above reports them.
    lines.on("error", () => {})
    lines.once("line", (line) => {
      let response: Response
      try {
        response = JSON.parse(line) as Response
      } catch {
        return finish(Effect.fail(new ControlError({ reason: "Broken", message: "the agent answered with something other than JSON" })))
      }
      finish(
        response.ok
          ? Effect.succeed(response.result)
          : Effect.fail(new ControlError({ reason: "Failed", code: response.error.code, message: response.error.message }))
      )
    })
    socket.once("close", () =>
      finish(Effect.fail(new ControlError({ reason: "Broken", message: "the agent closed the control socket without answering" }))))
    return Effect.sync(() => socket.destroy())
  }).pipe(
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () =>
        new ControlError({ reason: "Broken", message: `the agent did not answer within ${Duration.toMillis(timeout) / 1000} s` })
    })
  )
