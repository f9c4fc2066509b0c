/**
 * Several parameterized statements in one round trip on a node-postgres connection, which itself waits for each
 * statement's reply before sending the next. Each statement text is prepared once per connection with SQL `PREPARE`,
 * and each call is an `EXECUTE name(literals)`; calls are joined into one simple-protocol message. Postgres runs the
 * message's statements in order and stops at the first error, so a failed message leaves later statements unrun.
 */
import { createRequire } from "node:module"
import { Effect } from "effect"
import type Pg from "pg"

// node-postgres's own conversion of a parameter to the text it binds (an untyped module).
const { prepareValue } = createRequire(import.meta.url)("pg/lib/utils.js") as {
  readonly prepareValue: (value: unknown) => unknown
}

/** A row as node-postgres returns it. */
export type Row = Record<string, unknown>

/**
 * Quotes text as a string constant, as node-postgres's `escapeLiteral` does (quotes doubled; with a backslash, an E''
 * constant with backslashes doubled, whatever standard_conforming_strings is), but with native replaces: its
 * per-character loop cost ~0.5 ms for a batch of 64 events.
 */
const quote = (text: string): string => {
  const body = text.replaceAll("'", "''")
  return text.includes("\\") ? ` E'${body.replaceAll("\\", "\\\\")}'` : `'${body}'`
}

/** A parameter as an SQL literal: the text node-postgres would have bound for it, quoted. */
export const literal = (value: unknown): string => {
  const prepared = prepareValue(value) as string | Buffer | null
  if (prepared === null) return "NULL"
  const text = Buffer.isBuffer(prepared) ? `\\x${prepared.toString("hex")}` : prepared
  // A NUL would end the message early; no text value can hold one anyway.
  if (text.includes("\u0000")) throw new Error("a parameter contains U+0000, which Postgres text cannot hold")
  return quote(text)
}

/** Statements waiting to be sent, and the prepared statements of one connection. */
export interface Pipeline {
  /** Adds a statement, which runs when the pipeline is next sent; returns the index of its rows in `send`'s result. */
  readonly add: (text: string, params?: ReadonlyArray<unknown>) => number
  /** Adds a statement without parameters, sent as is (`begin`, `commit`, `savepoint x`); returns its index. */
  readonly addRaw: (text: string) => number
  /** Sends every waiting statement in one message; the rows of each, in order. */
  readonly send: Effect.Effect<ReadonlyArray<ReadonlyArray<Row>>, Error>
  /** `send` without an Effect: the writer's fast path (see `PgWriterFast`) calls it from a plain callback. */
  readonly sendWith: (callback: (error: Error | null, rows: ReadonlyArray<ReadonlyArray<Row>>) => void) => void
  /**
   * Drops the waiting statements without sending them, and forgets the statements they would have prepared (their
   * `PREPARE` never reached the server). The connection is as it was after the last send.
   */
  readonly discard: () => void
  /**
   * Recovers from a failure: drops the waiting statements, sends `rollback` (`rollback` or `rollback to savepoint x`)
   * and forgets the prepared statements, in one message. They must be forgotten because a `PREPARE` after the failing
   * statement never ran while one before it did, and a rollback does not undo `PREPARE`.
   */
  readonly recover: (rollback: string) => Effect.Effect<void, Error>
}

/** A pipeline on one connection; its prepared statements live as long as the connection. */
export const make = (client: Pg.Client): Pipeline => {
  const names = new Map<string, string>()
  // Statement texts named since the last send: their PREPARE is only in `waiting`.
  let unsent: Array<string> = []
  let waiting: Array<string> = []
  const query = (message: string, callback: (error: Error | null, rows: ReadonlyArray<ReadonlyArray<Row>>) => void) =>
    client.query<Row>(message, (error: Error | null, result: Pg.QueryResult<Row> | Array<Pg.QueryResult<Row>>) => {
      if (error) return callback(error, [])
      callback(null, Array.isArray(result) ? result.map((r) => r.rows ?? []) : [result.rows ?? []])
    })
  const run = (message: string) =>
    Effect.async<ReadonlyArray<ReadonlyArray<Row>>, Error>((resume) => {
      query(message, (error, rows) => resume(error ? Effect.fail(error) : Effect.succeed(rows)))
    })
  const take = () => {
    const message = waiting.join(";\n")
    waiting = []
    unsent = []
    return message
  }
  return {
    add: (text, params = []) => {
      let name = names.get(text)
      if (name === undefined) {
        name = `connect_p${names.size}`
        names.set(text, name)
        unsent.push(text)
        waiting.push(`prepare ${name} as ${text}`)
      }
      waiting.push(params.length === 0 ? `execute ${name}` : `execute ${name}(${params.map(literal).join(", ")})`)
      return waiting.length - 1
    },
    addRaw: (text) => waiting.push(text) - 1,
    send: Effect.suspend(() => run(take())),
    sendWith: (callback) => query(take(), callback),
    discard: () => {
      for (const text of unsent) names.delete(text)
      unsent = []
      waiting = []
    },
    recover: (rollback) =>
      Effect.suspend(() => {
        waiting = []
        unsent = []
        const forget = names.size > 0
        names.clear()
        return Effect.asVoid(run(forget ? `${rollback};\ndeallocate all` : rollback))
      })
  }
}
