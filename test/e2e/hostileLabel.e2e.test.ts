/**
 * An agent's label is chosen by whoever holds a workspace API key (POST /v1/agents {"label"}); the operator reads it in
 * `connect hub agent list`. A label carrying terminal control sequences must reach the operator's terminal as text,
 * never as a sequence (clear the screen and draw fake rows, retitle the window, write the clipboard with OSC 52).
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Effect, Exit, Layer, Scope } from "effect"
import * as Admin from "../../hub/commands/Admin.ts"
import * as Database from "../../hub/db/Database.ts"
import * as Migrations from "../../hub/db/Migrations.ts"
import * as PgEventLog from "../../hub/eventlog/PgEventLog.ts"
import * as Main from "../../hub/Main.ts"
import * as HubLog from "../support/HubLog.ts"
import { killTracked, spawn } from "../support/processes.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

let scope: Scope.CloseableScope
let url: string

beforeAll(async () => {
  scope = Effect.runSync(Scope.make())
  url = await Effect.runPromise(Scope.extend(TestDatabase.makeTestDatabaseUrl, scope))
})

afterAll(async () => {
  killTracked()
  await Effect.runPromise(Scope.close(scope, Exit.void))
})

const LABEL = "ok\u001b[2J\u001b[H\u001b]52;c;cm0gLXJmIH4=\u0007\u009b31m\r\nFAKE ROW\u202e"

describe("connect hub agent list with a hostile label", () => {
  it("prints the label's control characters as text, one line per agent", async () => {
    await Effect.runPromise(
      Effect.gen(function*() {
        yield* Migrations.run
        const { workspaceId } = yield* Admin.createWorkspace("w")
        yield* HubLog.provisionAgent(workspaceId, LABEL)
      }).pipe(
        Effect.provide(PgEventLog.layer({ inline: Main.INLINE_PROJECTIONS }).pipe(Layer.provideMerge(PgClient.layer(Database.pgClientConfig(url))))),
        Effect.scoped
      )
    )
    const list = spawn(process.execPath, ["bin/connect.js", "hub", "agent", "list"], { env: { ...process.env, DATABASE_URL: url } })
    expect(await list.exited(60_000)).toEqual({ code: 0, signal: null })
    const out = list.stdout()
    expect(out).toContain("ok")
    // eslint-disable-next-line no-control-regex
    expect(out).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/)
    expect(out.trimEnd().split("\n")).toHaveLength(2)
  }, 120_000)
})
