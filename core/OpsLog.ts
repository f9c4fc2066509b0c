/**
 * The operational log of `connect hub` and `connect up` (not the audit log): every line scrubbed of secrets
 * (Scrub.ts), client addresses masked, filtered by `--log-level`, written as text or, with `--log-format json`, as one
 * ECS object per line (`@timestamp`, `log.level`, `message`, `event.action`, `source.ip`, ...) for log shippers.
 * Code annotates a line with `event.action` and `source.ip` (see `annotate`); this module masks and places them.
 */
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as HashSet from "effect/HashSet"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { maskPeer } from "./Mask.ts"
import { scrub } from "./Scrub.ts"

/** `--log-format`: text for people, json (ECS, one object per line) for log shippers. */
export const FORMATS = ["text", "json"] as const
export type Format = (typeof FORMATS)[number]

/** `--log-level`: the least severe line written (`none` writes no log line; start-up lines and one-time displays still print). */
export const LEVELS = ["debug", "info", "warn", "error", "none"] as const
export type Level = (typeof LEVELS)[number]

/** How a process logs. */
export interface Options {
  readonly format: Format
  readonly level: Level
  /** `service.name` of the JSON lines: `connect-hub` or `connect-agent`. */
  readonly service: string
}

/** The annotation keys this module knows: the ECS fields a line may carry besides its message. */
export const ACTION = "event.action"
export const SOURCE_IP = "source.ip"

/** Annotates the lines `effect` logs with what happened (`event.action`) and the client's address (masked when written). */
export const annotate = (action: string, sourceIp?: string) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.annotateLogs(effect, sourceIp === undefined ? { [ACTION]: action } : { [ACTION]: action, [SOURCE_IP]: sourceIp })

const effectLevel: Record<Level, LogLevel.LogLevel> = {
  debug: LogLevel.Debug,
  info: LogLevel.Info,
  warn: LogLevel.Warning,
  error: LogLevel.Error,
  none: LogLevel.None
}

const rank: Record<Exclude<Level, "none">, number> = { debug: 0, info: 1, warn: 2, error: 3 }

/** Whether a line at `line` is written under `--log-level threshold`. */
export const enabled = (threshold: Level, line: Exclude<Level, "none">): boolean =>
  threshold !== "none" && rank[line] >= rank[threshold]

/** The ECS `log.level` of an Effect level. */
const ecsLevel = (level: LogLevel.LogLevel): string =>
  level._tag === "Warning" ? "warn" : level._tag === "Fatal" ? "critical" : level.label.toLowerCase()

const text = (u: unknown): string => (typeof u === "string" ? u : u instanceof Error ? u.message : JSON.stringify(u) ?? String(u))

/** One ECS object for a line: its fields in ECS names, addresses masked, extra annotations under `labels`. */
export const ecs = (line: {
  readonly date: Date
  readonly level: string
  readonly message: string
  readonly service: string
  readonly annotations?: Iterable<readonly [string, unknown]>
  readonly error?: string
}): Record<string, unknown> => {
  const out: Record<string, unknown> = {
    "@timestamp": line.date.toISOString(),
    "log.level": line.level,
    message: line.message,
    "service.name": line.service,
    "ecs.version": "8.11.0"
  }
  const labels: Record<string, string> = {}
  for (const [key, value] of line.annotations ?? []) {
    if (key === SOURCE_IP) out[SOURCE_IP] = maskPeer(text(value))
    else if (key === ACTION) out[ACTION] = text(value)
    else labels[key] = text(value)
  }
  if (Object.keys(labels).length > 0) out.labels = labels
  if (line.error !== undefined) out["error.message"] = line.error
  return out
}

/** One JSON line of `fields`, scrubbed (secrets are letters and digits, so scrubbing keeps the JSON valid). */
export const jsonLine = (fields: Record<string, unknown>): string => scrub(JSON.stringify(fields))

/**
 * A text line: `<ISO time> <LEVEL> <message> key=value…`, `source.ip` masked, the cause on the lines after, the
 * whole scrubbed.
 */
const textLogger = Logger.make((options): string => {
  const message = (Array.isArray(options.message) ? options.message : [options.message]).map(text).join(" ")
  let line = `${options.date.toISOString()} ${options.logLevel.label} ${message}`
  for (const [key, value] of options.annotations) line += ` ${key}=${key === SOURCE_IP ? maskPeer(text(value)) : text(value)}`
  if (!Cause.isEmpty(options.cause)) line += `\n${Cause.pretty(options.cause)}`
  return scrub(line)
})

const jsonLogger = (service: string) =>
  Logger.make((options) =>
    jsonLine(ecs({
      date: options.date,
      level: ecsLevel(options.logLevel),
      message: (Array.isArray(options.message) ? options.message : [options.message]).map(text).join(" "),
      service,
      annotations: options.annotations,
      ...(Cause.isEmpty(options.cause) ? {} : { error: Cause.pretty(options.cause) })
    }))
  )

/** The scrubbed logger of `options`, writing one line to stdout per log call. */
export const logger = (options: Options): Logger.Logger<unknown, void> =>
  Logger.map(options.format === "json" ? jsonLogger(options.service) : textLogger, (line) => {
    process.stdout.write(`${line}\n`)
  })

/**
 * In JSON format, what the program prints with `Console` (start-up lines, warnings, one-time displays) becomes one
 * ECS line each too: `log` at info on stdout, `error` at warn on stderr. Not scrubbed (a one-time display goes this
 * way) and not filtered by level (a start-up line or a display must never be lost to --log-level).
 */
const jsonConsole = (base: Console.Console, service: string): Console.Console => {
  const line = (level: string, args: ReadonlyArray<unknown>) =>
    `${JSON.stringify(ecs({ date: new Date(), level, message: args.map(text).join(" "), service }))}\n`
  const log = (...args: ReadonlyArray<unknown>) => void process.stdout.write(line("info", args))
  const error = (...args: ReadonlyArray<unknown>) => void process.stderr.write(line("warn", args))
  const unsafe = { ...globalThis.console, log, info: log, error, warn: error }
  return {
    ...base,
    unsafe,
    log: (...args) => Effect.sync(() => log(...args)),
    info: (...args) => Effect.sync(() => log(...args)),
    error: (...args) => Effect.sync(() => error(...args)),
    warn: (...args) => Effect.sync(() => error(...args))
  }
}

/** The process's logging: the scrubbed logger in place of Effect's default, `--log-level`, and in JSON a JSON console. */
export const layer = (options: Options): Layer.Layer<never> =>
  Layer.mergeAll(
    // The only logger: NodeRuntime.runMain installs a pretty one, which writes unscrubbed.
    Layer.locallyScoped(FiberRef.currentLoggers, HashSet.make(logger(options))),
    Logger.minimumLogLevel(effectLevel[options.level]),
    options.format === "json"
      ? Layer.unwrapEffect(Console.consoleWith((base) => Effect.succeed(Console.setConsole(jsonConsole(base, options.service)))))
      : Layer.empty
  )

/**
 * Plain lines of a program that prints rather than logs (the agent's `out`/`err`): scrubbed, filtered by level, and
 * in JSON one ECS object each with `event.action` when given. Text lines keep the agent's format (a timestamp first
 * when the output is not a terminal).
 */
export const lines = (options: Options) => {
  const write = (stream: NodeJS.WriteStream, level: "info" | "warn", line: string, action?: string) => {
    if (!enabled(options.level, level)) return
    if (options.format === "json") {
      const annotations = action === undefined ? [] : [[ACTION, action] as const]
      stream.write(`${jsonLine(ecs({ date: new Date(), level, message: line, service: options.service, annotations }))}\n`)
    } else {
      stream.write(`${stream.isTTY ? "" : `${new Date().toISOString()} `}${scrub(line)}\n`)
    }
  }
  return {
    out: (line: string, action?: string) => write(process.stdout, "info", line, action),
    err: (line: string, action?: string) => write(process.stderr, "warn", line, action)
  }
}
